// Parsers (and the matching formatters) for the value syntaxes of the configuration:
// durations, byte sizes, HOST:PORT and the upstream URL. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "config/settings.hpp"

namespace imagegate::config {

/// Parses a duration: one or more `<digits><unit>` groups with units `h`, `m`, `s`, `ms`, each
/// unit at most once and in that order ("1500ms", "5s", "1h30m", "0s"). Rejects an empty
/// string, a bare number, signs, fractions, spaces and values that overflow `duration`.
std::optional<duration> parse_duration(std::string_view text);

/// Formats a non-negative duration so that parse_duration() reads it back ("5m", "1h30m",
/// "1s500ms", "0s").
std::string format_duration(duration d);

/// Parses a byte count: digits with an optional unit. Binary units `KiB`, `MiB`, `GiB`, `TiB`
/// multiply by 1024^n, decimal units `KB`, `MB`, `GB`, `TB` by 1000^n, `B` or no unit by 1.
/// Rejects signs, fractions, spaces, unknown units and overflow of 64 bits.
std::optional<std::uint64_t> parse_size(std::string_view text);

/// Formats a byte count in the largest binary unit that divides it exactly ("256MiB", "1000").
std::string format_size(std::uint64_t bytes);

/// Parses "true", "false", "1" or "0" (environment and flag spelling of a boolean).
std::optional<bool> parse_bool(std::string_view text);

/// Parses a plain decimal unsigned integer ("0", "64"); no sign, no unit, no overflow.
std::optional<std::uint64_t> parse_count(std::string_view text);

/// A listener address. `host` is a name, an IPv4 literal or an IPv6 literal without brackets.
struct host_port {
    std::string host;
    std::uint16_t port = 0;

    friend bool operator==(const host_port&, const host_port&) = default;
};

std::ostream& operator<<(std::ostream& os, const host_port& hp);

/// Parses HOST:PORT ("127.0.0.1:8080", "[::1]:8080", "localhost:0"). The host is required;
/// an IPv6 literal must be in brackets; the port is 0..65535 (0 = pick a free port).
std::optional<host_port> parse_host_port(std::string_view text);

/// The upstream base URL split into what the connection pool needs.
struct upstream_url {
    /// true for https://, false for http://.
    bool tls = true;
    /// Host name or IP literal (IPv6 without brackets); used for DNS, SNI and verification.
    std::string host;
    /// 443 or 80 unless the URL names a port.
    std::uint16_t port = 443;
    /// Path prefix without a trailing slash ("/client/v4"); empty for the root.
    std::string base_path;

    friend bool operator==(const upstream_url&, const upstream_url&) = default;
};

std::ostream& operator<<(std::ostream& os, const upstream_url& u);

/// Parses an `https://` or `http://` URL ("https://api.cloudflare.com/client/v4"). Rejects
/// other schemes, user info, a query, a fragment, an empty host and port 0, because each of
/// them would be silently dropped or misused when requests are built from the base URL.
std::optional<upstream_url> parse_upstream_url(std::string_view text);

}  // namespace imagegate::config
