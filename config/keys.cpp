#include "config/keys.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <type_traits>

#include "config/forward.hpp"
#include "config/parse.hpp"

namespace imagegate::config {
namespace {

template <class... F>
struct overloaded : F... {
    using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

/// Access to `(s.*Section).*Member`, typed by the member.
template <auto Section, auto Member>
constexpr field_ref field() {
    using type = std::remove_cvref_t<decltype(std::declval<settings&>().*Section.*Member)>;
    return field_access<type>{
        [](settings& s) -> type& { return (s.*Section).*Member; },
        [](const settings& s) -> const type& { return (s.*Section).*Member; },
    };
}

constexpr std::uint64_t ms(std::uint64_t n) { return n; }
constexpr std::uint64_t seconds(std::uint64_t n) { return n * 1000; }
constexpr std::uint64_t minutes(std::uint64_t n) { return n * seconds(60); }
constexpr std::uint64_t hours(std::uint64_t n) { return n * minutes(60); }
constexpr std::uint64_t days(std::uint64_t n) { return n * hours(24); }

// One row per key. The macro spells section and name once, so the TOML key, the environment
// name and the C++ field cannot disagree. Bounds: {min, max} for counts, sizes (bytes) and
// durations (ms); cross-field rules (power-of-two shards, burst <= budget, ...) are in check().
// clang-format off
#define IMAGEGATE_KEY(section, name, kind, ...)                                                 \
    key_spec{#section, #name, value_kind::kind,                                                 \
             field<&settings::section, &decltype(settings::section)::name>(), __VA_ARGS__}
// clang-format on

constexpr std::array key_table{
    IMAGEGATE_KEY(server, listen, host_port),
    IMAGEGATE_KEY(server, admin_listen, host_port),
    IMAGEGATE_KEY(server, threads, count, 0, 1024),
    IMAGEGATE_KEY(server, header_timeout, interval, ms(1), hours(1)),
    IMAGEGATE_KEY(server, idle_timeout, interval, ms(1), days(1)),
    IMAGEGATE_KEY(server, write_timeout, interval, ms(1), hours(1)),
    IMAGEGATE_KEY(server, drain_timeout, interval, ms(1), hours(1)),
    IMAGEGATE_KEY(server, max_connections, count, 1, 10'000'000),
    IMAGEGATE_KEY(server, max_header_bytes, size, kib, mib),
    IMAGEGATE_KEY(server, tls_cert, text),
    IMAGEGATE_KEY(server, tls_key, text),

    IMAGEGATE_KEY(upstream, url, url),
    IMAGEGATE_KEY(upstream, ca_file, text),
    IMAGEGATE_KEY(upstream, token_file, text),
    IMAGEGATE_KEY(upstream, connect_timeout, interval, ms(1), minutes(5)),
    IMAGEGATE_KEY(upstream, request_timeout, interval, ms(1), minutes(10)),
    IMAGEGATE_KEY(upstream, max_connections, count, 1, 100'000),
    IMAGEGATE_KEY(upstream, max_body_bytes, size, kib, 64 * mib),
    IMAGEGATE_KEY(upstream, pool_idle_timeout, interval, ms(1), days(1)),
    IMAGEGATE_KEY(upstream, max_requests_per_connection, count, 1, 1'000'000'000),
    IMAGEGATE_KEY(upstream, acquire_timeout, interval, ms(1), minutes(10)),
    IMAGEGATE_KEY(upstream, allow_plaintext, boolean),

    IMAGEGATE_KEY(cache, max_bytes, size, 0, 1024 * 1024 * mib),
    IMAGEGATE_KEY(cache, max_entries, count, 0, 1'000'000'000),
    IMAGEGATE_KEY(cache, max_entry_bytes, size, 0, 1024 * 1024 * mib),
    IMAGEGATE_KEY(cache, shards, count, 1, 1024),
    IMAGEGATE_KEY(cache, ttl, interval, ms(1), days(30)),
    IMAGEGATE_KEY(cache, draft_ttl, interval, 0, days(30)),
    IMAGEGATE_KEY(cache, negative_ttl, interval, 0, days(30)),
    IMAGEGATE_KEY(cache, stale_while_revalidate, interval, 0, days(30)),
    IMAGEGATE_KEY(cache, stale_if_error, interval, 0, days(30)),

    IMAGEGATE_KEY(shield, budget, count, 1, 1'000'000'000),
    IMAGEGATE_KEY(shield, window, interval, ms(1), days(1)),
    IMAGEGATE_KEY(shield, burst, count, 1, 1'000'000'000),
    IMAGEGATE_KEY(shield, max_queue_wait, interval, seconds(1), minutes(10)),
    IMAGEGATE_KEY(shield, coalesce_timeout, interval, ms(1), minutes(20)),
    IMAGEGATE_KEY(shield, honor_client_no_cache, boolean),
    IMAGEGATE_KEY(shield, unproven_budget, count, 1, 1'000'000'000),
    IMAGEGATE_KEY(shield, max_credentials, count, 1, 10'000'000),

    IMAGEGATE_KEY(log, level, log_level),
    IMAGEGATE_KEY(log, format, log_format),
    IMAGEGATE_KEY(log, access_log, boolean),
    IMAGEGATE_KEY(log, access_log_hit_sample, count, 1, 1'000'000),

    IMAGEGATE_KEY(auth, mode, text),
    IMAGEGATE_KEY(auth, proof_ttl, interval, ms(1), hours(1)),
    IMAGEGATE_KEY(auth, keys_file, text),
    IMAGEGATE_KEY(auth, allow_anonymous, boolean),

    IMAGEGATE_KEY(forward, max_body_bytes, size, 0, 1024 * mib),
    IMAGEGATE_KEY(forward, body_timeout, interval, ms(1), hours(1)),
    IMAGEGATE_KEY(forward, anonymous_methods, methods, 0, 6),

    IMAGEGATE_KEY(admin, token_file, text),

    IMAGEGATE_KEY(redis, url, text),
    IMAGEGATE_KEY(redis, password_file, text),
    IMAGEGATE_KEY(redis, username, text),
    IMAGEGATE_KEY(redis, connect_timeout, interval, ms(1), minutes(1)),
    IMAGEGATE_KEY(redis, op_timeout, interval, ms(1), minutes(1)),
    IMAGEGATE_KEY(redis, key_prefix, text),
    IMAGEGATE_KEY(redis, ca_file, text),
    IMAGEGATE_KEY(redis, tls_server_name, text),

    IMAGEGATE_KEY(fleet, instances, count, 1, 10'000),
    IMAGEGATE_KEY(fleet, lease_timeout, interval, ms(10), minutes(10)),

    IMAGEGATE_KEY(warm, state_file, text),
};

#undef IMAGEGATE_KEY

constexpr std::array<std::string_view, 7> log_levels{"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};
constexpr std::array<std::string_view, 2> log_formats{"text", "json"};

bool is_one_of(std::string_view text, std::span<const std::string_view> allowed) {
    return std::find(allowed.begin(), allowed.end(), text) != allowed.end();
}

std::string upper(std::string_view text) {
    std::string out(text);
    for (auto& c : out) {
        if (c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    return out;
}

/// A TOML basic string: quotes, backslashes and control bytes escaped.
std::string quote(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            std::array<char, 8> buf{};
            std::snprintf(buf.data(), buf.size(), "\\u%04X", static_cast<unsigned>(c));
            out += buf.data();
        } else {
            out += c;
        }
    }
    return out + '"';
}

/// A bound in the key's own unit, for "must be between ..." messages.
std::string format_bound(value_kind kind, std::uint64_t bound) {
    switch (kind) {
    case value_kind::size: return format_size(bound);
    case value_kind::interval: return format_duration(duration(static_cast<duration::rep>(bound)));
    default: return std::to_string(bound);
    }
}

std::optional<std::string> check_bounds(const key_spec& key, std::uint64_t n) {
    if (n >= key.min && n <= key.max) {
        return std::nullopt;
    }
    const auto lo = format_bound(key.kind, key.min);
    const auto hi = format_bound(key.kind, key.max);
    if (key.max == std::numeric_limits<std::uint64_t>::max()) {
        return "must be at least " + lo;
    }
    return "must be between " + lo + " and " + hi;
}

/// "GET, HEAD" -> {"GET", "HEAD"}: comma-separated, blanks around items dropped; "" -> {}.
std::vector<std::string> split_list(std::string_view text) {
    std::vector<std::string> out;
    if (text.find_first_not_of(" \t") == std::string_view::npos) {
        return out;
    }
    for (;;) {
        const auto comma = text.find(',');
        auto item = text.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
            item.remove_prefix(1);
        }
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        out.emplace_back(item);
        if (comma == std::string_view::npos) {
            return out;
        }
        text.remove_prefix(comma + 1);
    }
}

/// Built in place: GCC 12 with -fsanitize=address at -O2 reports a false -Wmaybe-uninitialized
/// for `return key_value(x);` into an optional.
template <class T>
std::optional<key_value> as_value(std::optional<T> parsed) {
    std::optional<key_value> out;
    if (parsed) {
        out.emplace(std::in_place_type<T>, std::move(*parsed));
    }
    return out;
}

}  // namespace

std::string key_spec::path() const { return std::string(section) + '.' + std::string(name); }

std::string key_spec::env_name() const { return "IMAGEGATE_" + upper(section) + '_' + upper(name); }

std::span<const key_spec> keys() { return key_table; }

const key_spec* find_key(std::string_view path) {
    for (const auto& key : key_table) {
        if (path.size() == key.section.size() + 1 + key.name.size() &&
            path.starts_with(key.section) && path[key.section.size()] == '.' &&
            path.ends_with(key.name)) {
            return &key;
        }
    }
    return nullptr;
}

std::string_view expected(value_kind kind) {
    switch (kind) {
    case value_kind::text: return "a string";
    case value_kind::host_port:
        return "HOST:PORT such as \"127.0.0.1:8080\" or \"[::1]:8080\" (port 0..65535)";
    case value_kind::url:
        return "an https:// or http:// URL with a host and no user info, query or fragment";
    case value_kind::log_level: return "one of trace, debug, info, warn, error, critical, off";
    case value_kind::log_format: return "text or json";
    case value_kind::count: return "a non-negative integer";
    case value_kind::size: return "a size such as \"256MiB\", \"64KB\" or a byte count";
    case value_kind::interval: return "a duration string such as \"1500ms\", \"5s\", \"1h30m\"";
    case value_kind::boolean: return "true or false";
    case value_kind::methods:
        return "a list of methods from GET, HEAD, POST, PUT, PATCH, DELETE (\"GET,HEAD\" in the "
               "environment and flags)";
    }
    return "a value";
}

std::optional<key_value> parse_text(const key_spec& key, std::string_view text) {
    switch (key.kind) {
    case value_kind::count: return as_value(parse_count(text));
    case value_kind::size: return as_value(parse_size(text));
    case value_kind::interval: return as_value(parse_duration(text));
    case value_kind::boolean: return as_value(parse_bool(text));
    case value_kind::methods: return as_value(std::optional(split_list(text)));
    default: return as_value(std::optional<std::string>(text));
    }
}

std::optional<std::string> validate(const key_spec& key, const key_value& v) {
    const auto wrong = [&] { return "expected " + std::string(expected(key.kind)); };
    return std::visit(
        overloaded{
            [&](const std::string& text) -> std::optional<std::string> {
                switch (key.kind) {
                case value_kind::text: return std::nullopt;
                case value_kind::host_port:
                    return parse_host_port(text) ? std::nullopt : std::optional(wrong());
                case value_kind::url:
                    return parse_upstream_url(text) ? std::nullopt : std::optional(wrong());
                case value_kind::log_level:
                    return is_one_of(text, log_levels) ? std::nullopt : std::optional(wrong());
                case value_kind::log_format:
                    return is_one_of(text, log_formats) ? std::nullopt : std::optional(wrong());
                default: return wrong();
                }
            },
            [&](std::uint64_t n) -> std::optional<std::string> {
                if (key.kind != value_kind::count && key.kind != value_kind::size) {
                    return wrong();
                }
                return check_bounds(key, n);
            },
            [&](duration d) -> std::optional<std::string> {
                if (key.kind != value_kind::interval || d.count() < 0) {
                    return wrong();
                }
                return check_bounds(key, static_cast<std::uint64_t>(d.count()));
            },
            [&](bool) -> std::optional<std::string> {
                return key.kind == value_kind::boolean ? std::nullopt : std::optional(wrong());
            },
            [&](const std::vector<std::string>& list) -> std::optional<std::string> {
                if (key.kind != value_kind::methods) {
                    return wrong();
                }
                if (list.size() < key.min || list.size() > key.max) {
                    return "must have " + std::to_string(key.min) + " to " +
                           std::to_string(key.max) + " items";
                }
                return forward_methods_error(list);
            },
        },
        v);
}

std::optional<std::string> assign(const key_spec& key, const key_value& v, settings& s) {
    if (auto reason = validate(key, v)) {
        return reason;
    }
    return std::visit(
        [&](const auto& access) -> std::optional<std::string> {
            using type = std::remove_cvref_t<decltype(access.get(s))>;
            if constexpr (std::is_same_v<type, std::uint32_t>) {
                const auto n = std::get<std::uint64_t>(v);
                if (n > std::numeric_limits<std::uint32_t>::max()) {
                    return "must be at most " + std::to_string(std::numeric_limits<type>::max());
                }
                access.get(s) = static_cast<std::uint32_t>(n);
            } else {
                access.get(s) = std::get<type>(v);
            }
            return std::nullopt;
        },
        key.field);
}

std::optional<std::string> assign_text(const key_spec& key, std::string_view text, settings& s) {
    const auto v = parse_text(key, text);
    if (!v) {
        return "expected " + std::string(expected(key.kind));
    }
    return assign(key, *v, s);
}

key_value read(const key_spec& key, const settings& s) {
    return std::visit(
        [&](const auto& access) -> key_value {
            using type = std::remove_cvref_t<decltype(access.get_const(s))>;
            if constexpr (std::is_same_v<type, std::uint32_t>) {
                return key_value(std::uint64_t{access.get_const(s)});
            } else {
                return key_value(access.get_const(s));
            }
        },
        key.field);
}

std::string format_text(const key_spec& key, const settings& s) {
    return std::visit(overloaded{
                          [](const std::string& text) { return text; },
                          [&](std::uint64_t n) {
                              return key.kind == value_kind::size ? format_size(n)
                                                                  : std::to_string(n);
                          },
                          [](duration d) { return format_duration(d); },
                          [](bool b) { return std::string(b ? "true" : "false"); },
                          [](const std::vector<std::string>& list) {
                              std::string out;
                              for (const auto& item : list) {
                                  out += out.empty() ? "" : ",";
                                  out += item;
                              }
                              return out;
                          },
                      },
                      read(key, s));
}

std::string format_toml(const key_spec& key, const settings& s) {
    const auto value = read(key, s);
    if (const auto* list = std::get_if<std::vector<std::string>>(&value)) {
        std::string out = "[";
        for (const auto& item : *list) {
            out += out.size() > 1 ? ", " : "";
            out += quote(item);
        }
        return out + "]";
    }
    const auto text = format_text(key, s);
    switch (key.kind) {
    case value_kind::count:
    case value_kind::boolean: return text;
    default: return quote(text);
    }
}

}  // namespace imagegate::config
