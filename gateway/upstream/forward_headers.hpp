// Which headers cross the gateway on a forwarded call, both ways: the client's headers the
// upstream may see (an allowlist; never the client key, a cookie or hop-by-hop headers) and
// the upstream's headers the client may see (never Set-Cookie or hop-by-hop headers).
#pragma once

#include "gateway/upstream/forward.hpp"

#include <boost/beast/http/fields.hpp>

#include <string>
#include <string_view>

namespace imagegate::upstream {

/// A forwarded header value longer than this is dropped (a multipart Content-Type with its
/// boundary is ~100 bytes).
inline constexpr std::size_t max_forwarded_header_bytes = 1024;

/// The client's headers that go upstream, as `Name: value\r\n` lines: Content-Type and
/// Accept, the first of each, when header-safe and bounded. Framing is re-made by the client,
/// the credential is the client's to choose (client::forward), and nothing else passes.
std::string forward_request_headers(const boost::beast::http::fields& client);

/// The answer's headers a client sees (Content-Type, Retry-After, Ratelimit,
/// Ratelimit-Policy, cf-ray: the first of each, when header-safe and bounded) and the
/// rate-limit values for the gate. Status and length are the caller's to fill in.
forward_head forward_response_head(const boost::beast::http::fields& upstream);

/// The request head of a forwarded call: `<method> <path> HTTP/1.1`, `fixed` (Host, User-Agent,
/// Accept-Encoding), `credential` and `req.header_lines` as given, then the framing: the
/// length, chunked, or `Content-Length: 0` for a bodiless method that usually has one.
std::string forward_request_head(const forward_request& req, std::string_view path,
                                 std::string_view fixed, std::string_view credential);

}  // namespace imagegate::upstream
