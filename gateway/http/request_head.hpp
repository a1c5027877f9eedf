// The request-head rules of the data listener, apart from sockets so the fuzzer runs the
// very code the server runs: feeding bytes to Beast's parser with our raw-head checks
// (obs-fold, malformed vs unsupported versions), mapping parse errors to answers, and the
// RFC 9112 framing rules the parser leaves to us.
#pragma once

#include "gateway/core/errc.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <optional>
#include <string_view>

namespace imagegate::gateway {

/// Real clients send 10–20 fields; the official SDKs about 15.
inline constexpr std::ptrdiff_t max_header_fields = 100;

/// Hands `bytes` (everything buffered so far) to `parser` and returns how many it consumed;
/// `ec` as parser.put() sets it (need_more: feed more bytes), except that a head with
/// obs-fold becomes bad_obs_fold and a malformed request line is told apart from an HTTP
/// version we do not speak (bad_line_ending vs bad_version).
std::size_t put_head(boost::beast::http::request_parser<boost::beast::http::empty_body>& parser,
                     boost::asio::const_buffer bytes, boost::system::error_code& ec);

/// Which errc a failed head read maps to, or nothing when the connection just ends (EOF,
/// reset, timeout: nobody is left to read an answer).
std::optional<errc> classify_read_error(const boost::system::error_code& ec);

/// The framing rules of a complete head: HTTP/1.0 or 1.1, a target of a form we serve
/// (gateway/core/request_target.hpp), at most max_header_fields fields, exactly one Host on
/// 1.1, no repeated or list-valued Content-Length, and a Transfer-Encoding only as exactly
/// `chunked` without Content-Length. Returns the error to answer with. Whether a body is
/// allowed is the route's (router.hpp body_policy).
std::optional<errc> check_framing(
    const boost::beast::http::request_parser<boost::beast::http::empty_body>& parser);

/// The head announces a body: chunked, or Content-Length > 0.
bool has_body(const boost::beast::http::request_parser<boost::beast::http::empty_body>& parser);

/// check_framing, and no body: the rules for a route that takes none (every GET/HEAD).
std::optional<errc> check_request(
    const boost::beast::http::request_parser<boost::beast::http::empty_body>& parser);

}  // namespace imagegate::gateway
