// imagegate's own error codes: one enum for every failure the gateway itself reports, with
// its Boost.System category, its HTTP status and its Cloudflare-style envelope code.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <iosfwd>
#include <string_view>
#include <type_traits>

namespace imagegate {

/// Every error the gateway produces. The numbers are stable: they appear in logs.
/// README "Error codes" documents each one's HTTP status and envelope code.
enum class errc : int {
    // Client errors
    bad_request = 1,     ///< malformed HTTP, a body on GET, bad framing
    invalid_account_id,  ///< account_id is not 32 lowercase hex characters
    invalid_image_id,    ///< image_id empty, `.`/`..`, bad %-encoding, not UTF-8, > 1024 B
    route_not_found,     ///< no such endpoint (includes images/v1/keys, stats, variants, blob)
    method_not_allowed,  ///< the image route takes GET and HEAD only
    header_too_large,    ///< request line + headers over server.max_header_bytes
    unauthorized,        ///< no or unknown client credential
    forbidden,           ///< the credential may not read this account
    http_version_not_supported,  ///< not HTTP/1.0 or HTTP/1.1
    too_many_connections,        ///< server.max_connections reached
    // Upstream errors
    upstream_connect_failed,  ///< resolve or TCP connect failed
    upstream_tls_failed,      ///< TLS handshake or certificate verification failed
    upstream_timeout,         ///< connect, handshake or exchange passed its deadline
    upstream_bad_status,      ///< the upstream answered 5xx
    upstream_too_large,       ///< response body over upstream.max_body_bytes
    upstream_protocol_error,  ///< unparseable HTTP, truncated body, connection reset mid-answer
    invalid_upstream_json,    ///< a 200 whose body failed validation
    upstream_rate_limited,    ///< the upstream answered 429; paused until Retry-After
    budget_exhausted,         ///< the shield's token bucket has no token within the deadline
    // Gateway state
    pool_exhausted,         ///< no upstream connection within upstream.acquire_timeout
    single_flight_timeout,  ///< waited shield.coalesce_timeout for another request's fetch
    shutting_down,          ///< the process is draining
    not_implemented,        ///< the route exists but has no handler yet
    internal_error,         ///< a bug; logged with details, answered generically
    // Request bodies (appended: the numbers above stay as they were)
    payload_too_large,  ///< a request body over its route's limit
    request_timeout,    ///< a request body not complete by its deadline
    length_required,    ///< a chunked body on a route that takes Content-Length only
    // Forwarding grants (token mode; appended)
    forward_not_granted,            ///< the client key may not forward this method
    forward_path_forbidden,         ///< the client key may not forward to this path
    forward_anonymous_not_granted,  ///< a caller without a client key may not forward this
};

const boost::system::error_category& imagegate_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), imagegate_category()};
}

/// HTTP status the gateway answers with for `e`.
unsigned to_http_status(errc e) noexcept;
/// The `errors[0].code` of the envelope for `e` (990xx: imagegate's own range).
std::uint32_t to_envelope_code(errc e) noexcept;
/// Client-safe message: never contains hosts, paths, or ec.message() of lower layers.
std::string_view to_client_message(errc e) noexcept;
/// Whether sending the same request again may succeed. False for the client's own mistakes
/// (4xx) and for upstream answers that will not change by asking again (a record that
/// failed validation or is too large, a TLS verification failure) and for gateway bugs:
/// answered with `x-should-retry: false` so SDKs do not spend 2-10 retries on them.
bool retry_may_help(errc e) noexcept;

/// Prints the enumerator's name (tests and logs).
std::ostream& operator<<(std::ostream& os, errc e);
std::string_view to_string(errc e) noexcept;

/// All enumerators, for exhaustive tests and the README table.
inline constexpr errc all_errcs[] = {
    errc::bad_request,
    errc::invalid_account_id,
    errc::invalid_image_id,
    errc::route_not_found,
    errc::method_not_allowed,
    errc::header_too_large,
    errc::unauthorized,
    errc::forbidden,
    errc::http_version_not_supported,
    errc::too_many_connections,
    errc::upstream_connect_failed,
    errc::upstream_tls_failed,
    errc::upstream_timeout,
    errc::upstream_bad_status,
    errc::upstream_too_large,
    errc::upstream_protocol_error,
    errc::invalid_upstream_json,
    errc::upstream_rate_limited,
    errc::budget_exhausted,
    errc::pool_exhausted,
    errc::single_flight_timeout,
    errc::shutting_down,
    errc::not_implemented,
    errc::internal_error,
    errc::payload_too_large,
    errc::request_timeout,
    errc::length_required,
    errc::forward_not_granted,
    errc::forward_path_forbidden,
    errc::forward_anonymous_not_granted,
};

}  // namespace imagegate

template <>
struct boost::system::is_error_code_enum<imagegate::errc> : std::true_type {};
