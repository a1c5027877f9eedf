// apply_toml() and apply_toml_file(): the `--config FILE` source.
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>

#include "config/files.hpp"
#include "config/forward.hpp"
#include "config/keys.hpp"
#include "config/load.hpp"

namespace imagegate::config {
namespace {

/// Config files are a few KiB; the cap keeps a wrong path (a log, a disk image) harmless.
constexpr std::uint64_t max_config_file_bytes = 1 * mib;

std::string where(std::string_view origin, const toml::source_region& region) {
    return std::string(origin) + ':' + std::to_string(region.begin.line) + ':' +
           std::to_string(region.begin.column);
}

std::string_view type_name(const toml::node& node) {
    switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date or time";
    }
}

/// A table or key name as it would be written in TOML: bare when it can be, otherwise quoted
/// with escapes, so that an empty name (`[""]`) or one with control bytes still reads as a
/// name in an error message and never writes raw bytes from the file into a log line.
std::string display_name(std::string_view name) {
    const bool bare = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
    if (bare) {
        return std::string(name);
    }
    std::string out = "\"";
    for (const char c : name) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            constexpr std::string_view hex = "0123456789ABCDEF";
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

bool is_section(std::string_view name) {
    const auto all = keys();
    return std::any_of(all.begin(), all.end(),
                       [&](const key_spec& key) { return key.section == name; });
}

/// The strings of a TOML array of strings; nothing when `node` is anything else.
std::optional<std::vector<std::string>> string_list(const toml::node& node) {
    const auto* array = node.as_array();
    if (array == nullptr) {
        return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& item : *array) {
        const auto* str = item.as_string();
        if (str == nullptr) {
            return std::nullopt;
        }
        out.push_back(str->get());
    }
    return out;
}

/// Converts a TOML node by the key's kind and assigns it; returns the reason on failure.
std::optional<std::string> assign_node(const key_spec& key, const toml::node& node, settings& s) {
    const auto wrong_type = [&] {
        return "expected " + std::string(expected(key.kind)) + ", got " +
               std::string(type_name(node));
    };
    const auto from_integer = [&]() -> std::optional<std::string> {
        const auto n = node.as_integer()->get();
        if (n < 0) {
            return "must not be negative";
        }
        return assign(key, key_value(static_cast<std::uint64_t>(n)), s);
    };
    const auto from_string = [&]() -> std::optional<std::string> {
        return assign_text(key, node.as_string()->get(), s);
    };
    switch (key.kind) {
    case value_kind::count: return node.is_integer() ? from_integer() : wrong_type();
    case value_kind::size:
        // Sizes may be written either way: 1048576 or "1MiB".
        if (node.is_integer()) {
            return from_integer();
        }
        return node.is_string() ? from_string() : wrong_type();
    case value_kind::boolean:
        return node.is_boolean() ? assign(key, key_value(node.as_boolean()->get()), s)
                                 : wrong_type();
    case value_kind::methods: {
        const auto list = string_list(node);
        return list ? assign(key, key_value(*list), s) : wrong_type();
    }
    default:
        // Durations too: a bare integer would leave the unit to guesswork.
        return node.is_string() ? from_string() : wrong_type();
    }
}

bool is_hex64(std::string_view s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

bool is_account(std::string_view s) {
    return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

/// A client key's `forward_prefixes`: an array of at most max_forward_prefixes valid prefixes.
template <class Report>
bool parse_prefixes(const toml::node& node, const std::string& path, Report& report,
                    client_key& key) {
    const auto list = string_list(node);
    if (!list || list->size() > max_forward_prefixes) {
        report(node.source(), path,
               "expected an array of at most " + std::to_string(max_forward_prefixes) +
                   " path prefixes");
        return false;
    }
    for (const auto& prefix : *list) {
        if (auto reason = forward_prefix_error(prefix)) {
            report(node.source(), path, std::move(*reason));
            return false;
        }
    }
    key.forward_prefixes = *list;
    return true;
}

/// `[[client_keys]]`: an array of tables `{ sha256 = "<64 hex>", accounts = ["<id>" | "*"],
/// forward = ["GET", ...], forward_prefixes = ["/accounts/<id>/images/", ...] }` (the last two
/// optional).
/// Reports through `report(region, key, reason)`; appends valid entries to `out`.
template <class Report>
void parse_client_keys(const toml::node& node, const std::string& path, Report&& report,
                       std::vector<client_key>& out) {
    const auto* array = node.as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
        report(node.source(), path, "expected [[" + path + "]] entries (an array of tables)");
        return;
    }
    for (const auto& item : *array) {
        const auto& table = *item.as_table();
        client_key key;
        bool ok = true;
        for (const auto& [name, value] : table) {
            const std::string field(name.str());
            if (field == "sha256") {
                const auto* str = value.as_string();
                std::string hex = str != nullptr ? str->get() : std::string{};
                std::transform(hex.begin(), hex.end(), hex.begin(),
                               [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
                if (!is_hex64(hex)) {
                    report(value.source(), path + ".sha256",
                           "expected the hex SHA-256 of the key (64 hex characters)");
                    ok = false;
                }
                key.sha256 = std::move(hex);
            } else if (field == "accounts") {
                const auto* accounts = value.as_array();
                if (accounts == nullptr || accounts->empty()) {
                    report(value.source(), path + ".accounts",
                           "expected a non-empty array of account ids or \"*\"");
                    ok = false;
                    continue;
                }
                for (const auto& a : *accounts) {
                    const auto* str = a.as_string();
                    if (str == nullptr || (str->get() != "*" && !is_account(str->get()))) {
                        report(a.source(), path + ".accounts",
                               "expected an account id (32 lowercase hex characters) or \"*\"");
                        ok = false;
                        continue;
                    }
                    key.accounts.push_back(str->get());
                }
            } else if (field == "forward") {
                const auto list = string_list(value);
                auto reason = list ? forward_methods_error(*list)
                                   : std::optional<std::string>("expected an array of methods");
                if (reason) {
                    report(value.source(), path + ".forward", std::move(*reason));
                    ok = false;
                    continue;
                }
                key.forward = *list;
            } else if (field == "forward_prefixes") {
                ok = parse_prefixes(value, path + ".forward_prefixes", report, key) && ok;
            } else {
                report(name.source(), path + "." + display_name(field),
                       "unknown key in a client key entry");
                ok = false;
            }
        }
        if (ok && (key.sha256.empty() || key.accounts.empty())) {
            report(table.source(), path, "a client key entry needs sha256 and accounts");
            ok = false;
        }
        if (ok) {
            out.push_back(std::move(key));
        }
    }
}

}  // namespace

std::vector<config_error> load_keys_file(settings& s) {
    const auto& path = s.auth.keys_file;
    if (path.empty()) {
        return {};
    }
    const auto read = read_secret_file(path, max_config_file_bytes);
    if (!read.error.empty()) {
        return {{"auth.keys_file", read.error}};
    }
    toml::table root;
    try {
        root = toml::parse(read.text, path);
    } catch (const toml::parse_error& e) {
        return {{"auth.keys_file", where(path, e.source()) + ": " + std::string(e.description())}};
    }
    std::vector<config_error> errors;
    const auto report = [&](const toml::source_region& at, std::string key, std::string reason) {
        errors.push_back({std::move(key), std::move(reason) + " at " + where(path, at)});
    };
    for (const auto& [name, node] : root) {
        if (name.str() == "client_keys") {
            parse_client_keys(node, "client_keys", report, s.auth.client_keys);
        } else {
            report(name.source(), display_name(name.str()),
                   "unknown key in a keys file (only [[client_keys]] entries)");
        }
    }
    return errors;
}

std::vector<config_error> apply_toml(std::string_view text, std::string_view origin, settings& s) {
    toml::table root;
    try {
        root = toml::parse(text, origin);
    } catch (const toml::parse_error& e) {
        return {{"--config", where(origin, e.source()) + ": " + std::string(e.description())}};
    }
    // toml++ iterates tables in key order; report in file order instead.
    std::vector<std::pair<toml::source_position, config_error>> found;
    const auto report = [&](const toml::source_region& at, std::string key, std::string reason) {
        found.push_back(
            {at.begin, {std::move(key), std::move(reason) + " at " + where(origin, at)}});
    };
    for (const auto& [section_name, section_node] : root) {
        const std::string section(section_name.str());
        const auto* table = section_node.as_table();
        if (table == nullptr) {
            report(section_name.source(), display_name(section),
                   "unknown top-level key; keys belong in a [section]");
            continue;
        }
        if (!is_section(section)) {
            report(section_name.source(), display_name(section),
                   "unknown section [" + display_name(section) + "]");
            continue;
        }
        for (const auto& [name, node] : *table) {
            auto path = section + '.' + std::string(name.str());
            if (path == "auth.client_keys") {
                parse_client_keys(node, path, report, s.auth.client_keys);
                continue;
            }
            const auto* key = find_key(path);
            if (key == nullptr) {
                report(name.source(), section + '.' + display_name(name.str()),
                       "unknown key in [" + section + "]");
            } else if (auto reason = assign_node(*key, node, s)) {
                report(node.source(), std::move(path), std::move(*reason));
            }
        }
    }
    std::stable_sort(found.begin(), found.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<config_error> errors;
    for (auto& f : found) {
        errors.push_back(std::move(f.second));
    }
    return errors;
}

std::vector<config_error> apply_toml_file(const std::filesystem::path& file, settings& s) {
    const auto read = read_regular_file(file.string(), max_config_file_bytes);
    if (!read.error.empty()) {
        return {{"--config", read.error}};
    }
    return apply_toml(read.text, file.string(), s);
}

}  // namespace imagegate::config
