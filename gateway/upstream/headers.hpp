// Pure helpers for the request line and header values the upstream client sends: origin
// authority, target joining, IP-literal detection (no SNI for IPs) and status classes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace imagegate::upstream {

/// `Host` value for the origin (RFC 9110 §7.2): IPv6 literals in brackets, the port only
/// when it is not the scheme's default.
std::string host_header_value(std::string_view host, std::uint16_t port, bool tls);

/// `base_path` + `target` with exactly one `/` between them; `target` is already encoded
/// and starts with `/` (e.g. `/accounts/a/images/v1/x`). An empty base leaves it as is.
std::string join_target(std::string_view base_path, std::string_view target);

/// True if `value` may be sent as a header value: no control bytes except HTAB (so no CR or
/// LF that would end the line and start a header of the sender's choosing).
bool is_header_safe(std::string_view value) noexcept;

/// True if `target` may be sent as a request-target: non-empty, starts with `/`, and holds
/// no space or control byte.
bool is_target_safe(std::string_view target) noexcept;

/// The complete request head of `GET <target> HTTP/1.1`: `fields` are complete header lines
/// (each `Name: value\r\n`), sent in that order, then the empty line. The caller checks
/// the pieces with is_target_safe / is_header_safe.
std::string get_request_head(std::string_view target,
                             std::initializer_list<std::string_view> fields);

/// True for IPv4/IPv6 address literals (with or without brackets). RFC 6066 §3 forbids
/// literal addresses in SNI, so the connection sends SNI only for DNS names.
bool is_ip_literal(std::string_view host);

/// 2 for 2xx, ... 5 for 5xx; 0 for anything outside 100..599.
unsigned status_class(unsigned status) noexcept;

/// A header value is copied into the response only if it is at most this long, so a hostile
/// upstream cannot make every cached entry carry kilobytes of rate-limit text.
inline constexpr std::size_t max_kept_header_bytes = 256;

/// `value` if it is short enough and free of control characters, else empty.
std::string keep_header_value(std::string_view value);

}  // namespace imagegate::upstream
