// Helpers shared by the config tests: a fake environment, load() with string literals, and
// error-list queries that print well.
#pragma once

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "config/load.hpp"

namespace imagegate::config::test {

/// An environment as a map; unset variables are absent.
using fake_env = std::map<std::string, std::string, std::less<>>;

inline env_lookup lookup(const fake_env& env) {
    return [&env](std::string_view name) -> std::optional<std::string> {
        if (const auto it = env.find(name); it != env.end()) {
            return it->second;
        }
        return std::nullopt;
    };
}

inline load_result run(const std::vector<std::string>& args, const fake_env& env = {}) {
    return load(args, lookup(env));
}

/// "key: reason" per line, for test failure messages.
inline std::string dump(const std::vector<config_error>& errors) {
    std::ostringstream os;
    for (const auto& e : errors) {
        os << e << '\n';
    }
    return os.str();
}

inline const config_error* find_error(const std::vector<config_error>& errors,
                                      std::string_view key) {
    const auto it = std::find_if(errors.begin(), errors.end(),
                                 [&](const config_error& e) { return e.key == key; });
    return it == errors.end() ? nullptr : &*it;
}

inline std::vector<std::string> keys_of(const std::vector<config_error>& errors) {
    std::vector<std::string> out;
    for (const auto& e : errors) {
        out.push_back(e.key);
    }
    return out;
}

}  // namespace imagegate::config::test
