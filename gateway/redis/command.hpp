// A Redis command as its caller builds it (binary-safe arguments), and its RESP2 encoding
// through hiredis' formatter.
#pragma once

#include "gateway/redis/error.hpp"

#include <boost/system/result.hpp>

#include <concepts>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imagegate::redis {

/// One command: name and arguments, each an arbitrary byte string. Build it with
/// make_command() (g++ 12 rejects braced lists of string literals inside a co_await
/// expression, so there is deliberately no initializer-list constructor).
/// Thread-safety: a plain value; distinct objects safe, shared const objects safe.
class command {
public:
    command() = default;
    explicit command(std::string_view name) { args_.emplace_back(name); }

    command& arg(std::string_view a) {
        args_.emplace_back(a);
        return *this;
    }
    command& arg(const char* a) { return arg(std::string_view(a)); }
    command& arg(const std::string& a) { return arg(std::string_view(a)); }
    command& arg(std::string&& a) {
        args_.push_back(std::move(a));
        return *this;
    }
    template <std::integral I>
    command& arg(I v) {
        return arg(std::to_string(v));
    }

    /// The name as given ("SET"); empty for an empty command.
    std::string_view name() const noexcept {
        return args_.empty() ? std::string_view{} : std::string_view(args_.front());
    }
    const std::vector<std::string>& args() const noexcept { return args_; }

    friend bool operator==(const command&, const command&) = default;

private:
    std::vector<std::string> args_;
};

/// `make_command("SET", key, value, "PX", ttl_ms)`: strings, string views and integers.
template <class... Args>
command make_command(std::string_view name, Args&&... args) {
    command c(name);
    (c.arg(std::forward<Args>(args)), ...);
    return c;
}

/// For tests and debug logs: the name and the number of arguments only (arguments may
/// carry secrets, e.g. AUTH, or values).
std::ostream& operator<<(std::ostream& os, const command& c);

/// One command's RESP frame may be at most this long (Redis' own default proto-max-bulk-len
/// is 512 MiB; hiredis 0.14 computes the frame length in an int).
inline constexpr std::size_t max_command_bytes = 512ULL * 1024 * 1024;

/// Appends the RESP2 frame of `c` to `out`: command_too_large over max_command_bytes or
/// for an empty command.
boost::system::result<void> append_resp(std::string& out, const command& c);

}  // namespace imagegate::redis
