#include "config/parse.hpp"

#include <array>
#include <limits>
#include <ostream>

namespace imagegate::config {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/// Reads the leading run of digits of `text` into `value`; returns how many were read, or 0
/// when there are none or the value does not fit in 64 bits.
std::size_t read_digits(std::string_view text, std::uint64_t& value) {
    constexpr auto max = std::numeric_limits<std::uint64_t>::max();
    value = 0;
    std::size_t i = 0;
    for (; i < text.size() && is_digit(text[i]); ++i) {
        const auto digit = static_cast<std::uint64_t>(text[i] - '0');
        if (value > (max - digit) / 10) {
            return 0;
        }
        value = value * 10 + digit;
    }
    return i;
}

/// a * b, or nothing when it exceeds `limit`.
std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t limit) {
    if (b != 0 && a > limit / b) {
        return std::nullopt;
    }
    return a * b;
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
    std::uint64_t value = 0;
    if (text.empty() || text.size() > 5 || read_digits(text, value) != text.size() ||
        value > std::numeric_limits<std::uint16_t>::max()) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
}

/// A host name or IPv4 literal: letters, digits, '-', '.', '_'.
bool is_valid_name(std::string_view host) {
    if (host.empty() || host.size() > 253) {
        return false;
    }
    for (const char c : host) {
        if (!is_alnum(c) && c != '-' && c != '.' && c != '_') {
            return false;
        }
    }
    return true;
}

/// The inside of "[...]": hex digits, ':' and '.' (IPv4-mapped tail), at least one ':'.
bool is_valid_ipv6(std::string_view host) {
    if (host.size() < 2 || host.size() > 45 || host.find(':') == std::string_view::npos) {
        return false;
    }
    for (const char c : host) {
        if (!is_hex(c) && c != ':' && c != '.') {
            return false;
        }
    }
    return true;
}

/// HOST or HOST:PORT or [V6] or [V6]:PORT. `port` stays empty when the text names none.
struct authority {
    std::string host;
    std::optional<std::uint16_t> port;
};

std::optional<authority> parse_authority(std::string_view text) {
    authority out;
    std::string_view rest;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || !is_valid_ipv6(text.substr(1, close - 1))) {
            return std::nullopt;
        }
        out.host = std::string(text.substr(1, close - 1));
        rest = text.substr(close + 1);
    } else {
        const auto colon = text.find(':');
        const auto host = text.substr(0, colon);
        if (!is_valid_name(host)) {
            return std::nullopt;
        }
        out.host = std::string(host);
        rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
    }
    if (rest.empty()) {
        return out;
    }
    if (rest.front() != ':') {
        return std::nullopt;
    }
    out.port = parse_port(rest.substr(1));
    if (!out.port) {
        return std::nullopt;
    }
    return out;
}

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) {
        return false;
    }
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char c = text[i];
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
        if (c != prefix[i]) {
            return false;
        }
    }
    return true;
}

struct duration_unit {
    std::string_view suffix;
    std::uint64_t millis;
};

/// Largest first: parse_duration requires this order, format_duration emits it.
constexpr std::array<duration_unit, 4> duration_units{{
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
}};

/// Index into duration_units of the unit `text` starts with, or duration_units.size().
std::size_t duration_unit_at(std::string_view text) {
    if (text.starts_with("ms")) {  // before "m"
        return 3;
    }
    for (std::size_t i = 0; i < 3; ++i) {
        if (text.starts_with(duration_units[i].suffix)) {
            return i;
        }
    }
    return duration_units.size();
}

struct size_unit {
    std::string_view suffix;
    std::uint64_t factor;
};

constexpr std::array<size_unit, 9> size_units{{
    {"B", 1},
    {"KiB", 1ULL << 10},
    {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},
    {"TiB", 1ULL << 40},
    {"KB", 1'000},
    {"MB", 1'000'000},
    {"GB", 1'000'000'000},
    {"TB", 1'000'000'000'000},
}};

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<duration::rep>::max());
    if (text.empty()) {
        return std::nullopt;
    }
    std::uint64_t total = 0;
    std::size_t next_unit = 0;  // index into duration_units: each unit once, largest first
    while (!text.empty()) {
        std::uint64_t count = 0;
        const auto digits = read_digits(text, count);
        if (digits == 0) {
            return std::nullopt;
        }
        text.remove_prefix(digits);
        const auto unit = duration_unit_at(text);
        if (unit < next_unit || unit == duration_units.size()) {
            return std::nullopt;
        }
        text.remove_prefix(duration_units[unit].suffix.size());
        next_unit = unit + 1;
        const auto part = checked_mul(count, duration_units[unit].millis, limit);
        if (!part || *part > limit - total) {
            return std::nullopt;
        }
        total += *part;
    }
    return duration(static_cast<duration::rep>(total));
}

std::string format_duration(duration d) {
    auto left = static_cast<std::uint64_t>(d.count() < 0 ? 0 : d.count());
    if (left == 0) {
        return "0s";
    }
    std::string out;
    for (const auto& unit : duration_units) {
        if (left >= unit.millis) {
            out += std::to_string(left / unit.millis);
            out += unit.suffix;
            left %= unit.millis;
        }
    }
    return out;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    std::uint64_t count = 0;
    const auto digits = read_digits(text, count);
    if (digits == 0) {
        return std::nullopt;
    }
    const auto suffix = text.substr(digits);
    if (suffix.empty()) {
        return count;
    }
    for (const auto& unit : size_units) {
        if (suffix == unit.suffix) {
            return checked_mul(count, unit.factor, std::numeric_limits<std::uint64_t>::max());
        }
    }
    return std::nullopt;
}

std::string format_size(std::uint64_t bytes) {
    // TiB, GiB, MiB, KiB: the binary units, largest first.
    for (std::size_t i = 4; i >= 1; --i) {
        const auto& unit = size_units[i];
        if (bytes != 0 && bytes % unit.factor == 0) {
            return std::to_string(bytes / unit.factor) + std::string(unit.suffix);
        }
    }
    return std::to_string(bytes);
}

std::optional<bool> parse_bool(std::string_view text) {
    if (text == "true" || text == "1") {
        return true;
    }
    if (text == "false" || text == "0") {
        return false;
    }
    return std::nullopt;
}

std::optional<std::uint64_t> parse_count(std::string_view text) {
    std::uint64_t value = 0;
    if (text.empty() || read_digits(text, value) != text.size()) {
        return std::nullopt;
    }
    return value;
}

std::ostream& operator<<(std::ostream& os, const host_port& hp) {
    return os << "{host=" << hp.host << " port=" << hp.port << '}';
}

std::optional<host_port> parse_host_port(std::string_view text) {
    auto parsed = parse_authority(text);
    if (!parsed || !parsed->port) {
        return std::nullopt;
    }
    return host_port{std::move(parsed->host), *parsed->port};
}

std::ostream& operator<<(std::ostream& os, const upstream_url& u) {
    return os << "{tls=" << u.tls << " host=" << u.host << " port=" << u.port
              << " base_path=" << u.base_path << '}';
}

std::optional<upstream_url> parse_upstream_url(std::string_view text) {
    for (const char c : text) {
        // Spaces and control bytes would end up verbatim in the request line.
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '?' || c == '#') {
            return std::nullopt;
        }
    }
    upstream_url out;
    if (starts_with_nocase(text, "https://")) {
        text.remove_prefix(8);
    } else if (starts_with_nocase(text, "http://")) {
        out.tls = false;
        out.port = 80;
        text.remove_prefix(7);
    } else {
        return std::nullopt;
    }
    const auto slash = text.find('/');
    const auto authority_text = text.substr(0, slash);
    if (authority_text.find('@') != std::string_view::npos) {
        return std::nullopt;
    }
    auto parsed = parse_authority(authority_text);
    if (!parsed || (parsed->port && *parsed->port == 0)) {
        return std::nullopt;
    }
    out.host = std::move(parsed->host);
    if (parsed->port) {
        out.port = *parsed->port;
    }
    auto path = slash == std::string_view::npos ? std::string_view{} : text.substr(slash);
    while (!path.empty() && path.back() == '/') {
        path.remove_suffix(1);
    }
    out.base_path = std::string(path);
    return out;
}

}  // namespace imagegate::config
