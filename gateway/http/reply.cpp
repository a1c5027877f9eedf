#include "gateway/http/reply.hpp"

#include "gateway/http/envelope.hpp"

#include <boost/beast/http/status.hpp>

#include <algorithm>
#include <charconv>

namespace imagegate::gateway {

void append_status_line(head_buffer& out, unsigned status) {
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    const auto reason =
        boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
    out.append(std::string_view(reason.data(), reason.size()));
    out += "\r\n";
}

reply make_reply(unsigned status, std::string body, std::string_view content_type,
                 std::string_view extra_headers) {
    reply r;
    r.status = status;
    append_status_line(r.head, status);
    r.head += "Content-Type: ";
    r.head += content_type;
    r.head += "\r\nContent-Length: ";
    r.head += std::to_string(body.size());
    r.head += "\r\n";
    r.head += extra_headers;
    r.set_body(std::move(body));
    return r;
}

reply make_error_reply(errc e, std::string_view extra_headers, std::optional<retry_after> after) {
    std::string extra(extra_headers);
    // The image route's methods, unless the caller (the router) names the route's own.
    if (e == errc::method_not_allowed && !extra_headers.starts_with("Allow: ") &&
        extra_headers.find("\r\nAllow: ") == std::string_view::npos) {
        extra += "Allow: GET, HEAD\r\n";
    }
    if (!retry_may_help(e)) {
        extra += "x-should-retry: false\r\n";
    }
    const unsigned status = to_http_status(e);
    if (!after && (status == 429 || status == 503)) {
        after = retry_after{};
    }
    if (after) {
        // Never 0: SDKs retry at once on 0, which is exactly the herd these headers exist
        // to spread.
        extra += "Retry-After: ";
        extra += std::to_string(std::max<std::uint64_t>(after->seconds, 1));
        extra += "\r\nretry-after-ms: ";
        extra += std::to_string(std::max<std::uint64_t>(after->milliseconds, 1));
        extra += "\r\n";
    }
    return make_reply(status, error_envelope(e), "application/json", extra);
}

}  // namespace imagegate::gateway
