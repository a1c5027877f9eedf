#include "gateway/core/errc.hpp"

#include <ostream>
#include <string>

namespace imagegate {
namespace {

struct errc_info {
    unsigned http_status;
    std::uint32_t envelope_code;
    std::string_view message;
    /// Whether the same request may succeed if sent again. False is answered as
    /// `x-should-retry: false`, which every official SDK reads before its own status rules
    /// (they retry 408, 409, 429 and every 5xx otherwise, 2 to 10 times).
    bool retry_may_help;
};

// The one table of what the gateway answers for each error: HTTP status, envelope code,
// message, and whether a retry may help (README "Error codes" lists the same).
errc_info info(errc e) noexcept {
    switch (e) {
    case errc::bad_request: return {400, 99400, "Malformed request", false};
    case errc::invalid_account_id:
        return {400, 99401, "account_id must be 32 lowercase hexadecimal characters", false};
    case errc::invalid_image_id:
        return {400, 99402, "image_id is not a valid percent-encoded image identifier", false};
    case errc::route_not_found: return {404, 99404, "No route for that URI", false};
    case errc::method_not_allowed: return {405, 99405, "Method not allowed on this route", false};
    case errc::header_too_large: return {431, 99431, "Request header fields too large", false};
    case errc::unauthorized: return {401, 99410, "Authentication required", false};
    case errc::forbidden: return {403, 99411, "Not allowed to read this account", false};
    case errc::http_version_not_supported: return {505, 99510, "HTTP version not supported", false};
    case errc::too_many_connections: return {503, 99533, "Too many connections", true};
    case errc::upstream_connect_failed:
        return {502, 99502, "Could not connect to the upstream API", true};
    case errc::upstream_tls_failed: return {502, 99503, "TLS with the upstream API failed", false};
    case errc::upstream_timeout: return {504, 99504, "The upstream API timed out", true};
    case errc::upstream_bad_status:
        return {502, 99505, "The upstream API answered with a server error", true};
    case errc::upstream_too_large:
        return {502, 99506, "The upstream response was too large", false};
    case errc::upstream_protocol_error:
        return {502, 99507, "The upstream response was malformed", true};
    case errc::invalid_upstream_json:
        return {502, 99508, "The upstream answered an invalid image record", false};
    case errc::upstream_rate_limited:
        return {429, 99429, "The upstream API is rate limiting this token", true};
    case errc::budget_exhausted:
        return {429, 99430, "The gateway's upstream request budget is exhausted", true};
    case errc::pool_exhausted: return {503, 99530, "No upstream connection available", true};
    case errc::single_flight_timeout:
        return {504, 99531, "Timed out waiting for the upstream answer", true};
    case errc::shutting_down: return {503, 99532, "The gateway is shutting down", true};
    case errc::not_implemented: return {501, 99501, "Not implemented", false};
    case errc::internal_error: return {500, 99500, "Internal gateway error", false};
    case errc::payload_too_large: return {413, 99413, "Request body too large", false};
    case errc::request_timeout: return {408, 99408, "Request body not received in time", false};
    case errc::length_required:
        return {411, 99412, "This route needs a Content-Length, not a chunked body", false};
    case errc::forward_not_granted:
        return {403, 99414,
                "Forwarding this method is not granted to this client key: add it to "
                "auth.client_keys[].forward",
                false};
    case errc::forward_path_forbidden:
        return {403, 99415,
                "This client key may not forward to this path: it is outside the key's "
                "auth.client_keys[].accounts or forward_prefixes",
                false};
    case errc::forward_anonymous_not_granted:
        return {403, 99416,
                "Forwarding is not granted to callers without a client key: give the caller a "
                "key with auth.client_keys[].forward, or list the method in "
                "forward.anonymous_methods (loopback callers only)",
                false};
    }
    return {500, 99500, "Internal gateway error", false};
}

class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "imagegate"; }
    std::string message(int ev) const override {
        return std::string(info(static_cast<errc>(ev)).message);
    }
};

}  // namespace

const boost::system::error_category& imagegate_category() noexcept {
    static const category instance;
    return instance;
}

std::string_view to_string(errc e) noexcept {
    switch (e) {
    case errc::bad_request: return "bad_request";
    case errc::invalid_account_id: return "invalid_account_id";
    case errc::invalid_image_id: return "invalid_image_id";
    case errc::route_not_found: return "route_not_found";
    case errc::method_not_allowed: return "method_not_allowed";
    case errc::header_too_large: return "header_too_large";
    case errc::unauthorized: return "unauthorized";
    case errc::forbidden: return "forbidden";
    case errc::http_version_not_supported: return "http_version_not_supported";
    case errc::too_many_connections: return "too_many_connections";
    case errc::upstream_connect_failed: return "upstream_connect_failed";
    case errc::upstream_tls_failed: return "upstream_tls_failed";
    case errc::upstream_timeout: return "upstream_timeout";
    case errc::upstream_bad_status: return "upstream_bad_status";
    case errc::upstream_too_large: return "upstream_too_large";
    case errc::upstream_protocol_error: return "upstream_protocol_error";
    case errc::invalid_upstream_json: return "invalid_upstream_json";
    case errc::upstream_rate_limited: return "upstream_rate_limited";
    case errc::budget_exhausted: return "budget_exhausted";
    case errc::pool_exhausted: return "pool_exhausted";
    case errc::single_flight_timeout: return "single_flight_timeout";
    case errc::shutting_down: return "shutting_down";
    case errc::not_implemented: return "not_implemented";
    case errc::internal_error: return "internal_error";
    case errc::payload_too_large: return "payload_too_large";
    case errc::request_timeout: return "request_timeout";
    case errc::length_required: return "length_required";
    case errc::forward_not_granted: return "forward_not_granted";
    case errc::forward_path_forbidden: return "forward_path_forbidden";
    case errc::forward_anonymous_not_granted: return "forward_anonymous_not_granted";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, errc e) { return os << to_string(e); }

unsigned to_http_status(errc e) noexcept { return info(e).http_status; }
std::uint32_t to_envelope_code(errc e) noexcept { return info(e).envelope_code; }
std::string_view to_client_message(errc e) noexcept { return info(e).message; }
bool retry_may_help(errc e) noexcept { return info(e).retry_may_help; }

}  // namespace imagegate
