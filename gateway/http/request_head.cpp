// The request-head rules of the data listener; see request_head.hpp.
#include "gateway/http/request_head.hpp"

#include "gateway/core/request_target.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include <iterator>

namespace imagegate::gateway {

namespace http = boost::beast::http;

namespace {

// RFC 9112 §5.2: obs-fold (a field line continued on the next line) must be rejected or
// replaced; Beast silently joins the lines, which can hide a header from a filter in front
// of us that reads it differently. We see the raw head and reject it.
bool has_obs_fold(std::string_view head) noexcept {
    // memchr from line end to line end, not a byte loop: this runs on every request.
    for (auto i = head.find('\n'); i != std::string_view::npos && i + 1 < head.size();
         i = head.find('\n', i + 1)) {
        if (head[i + 1] == ' ' || head[i + 1] == '\t') {
            return true;
        }
    }
    return false;
}

// Beast reports bad_version both for "HTTP/2.0" and for a malformed request line (bare LF,
// garbage after the version). Only the first deserves 505 (RFC 9110 §15.6.6).
bool names_other_version(std::string_view head) noexcept {
    const auto eol = head.find("\r\n");
    if (eol == std::string_view::npos || eol < 9) {
        return false;
    }
    const std::string_view v = head.substr(eol - 8, 8);  // "HTTP/x.y"
    return v.starts_with("HTTP/") && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' &&
           v[7] <= '9' && head[eol - 9] == ' ';
}

}  // namespace

std::size_t put_head(http::request_parser<http::empty_body>& parser,
                     boost::asio::const_buffer bytes, boost::system::error_code& ec) {
    const std::size_t used = parser.put(bytes, ec);
    const std::string_view seen(static_cast<const char*>(bytes.data()), bytes.size());
    // Checked on every put that consumed bytes, need_more included: Beast consumes a
    // complete request line and complete fields before the head ends, and the caller drops
    // them. Beast needs the byte after a field's CRLF to see a fold, so a folded field is
    // always consumed whole, by one put.
    if ((!ec || ec == http::error::need_more) && has_obs_fold(seen.substr(0, used))) {
        ec = http::error::bad_obs_fold;
        return used;
    }
    if (ec == http::error::need_more) {
        return used;
    }
    if (ec == http::error::bad_version && !names_other_version(seen)) {
        ec = http::error::bad_line_ending;  // malformed, not a version we lack: 400
    }
    return used;
}

// Which errc a failed header read maps to, or nothing when the connection just ends
// (EOF, reset, timeout: nobody is left to read an answer).
std::optional<errc> classify_read_error(const boost::system::error_code& ec) {
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
        return errc::header_too_large;
    }
    // Beast accepts only HTTP/1.0 and 1.1 and reports any other version this way.
    if (ec == http::error::bad_version) {
        return errc::http_version_not_supported;
    }
    if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message &&
        ec != http::error::need_more) {
        return errc::bad_request;
    }
    return std::nullopt;
}

// Checks RFC 9112 framing rules the parser leaves to us. Returns the error to answer with.
std::optional<errc> check_framing(const http::request_parser<http::empty_body>& parser) {
    const auto& msg = parser.get();
    if (msg.version() != 11 && msg.version() != 10) {
        return errc::http_version_not_supported;
    }
    // Beast accepts any target bytes but SP and controls ("*", "host:443", "http://h?/x");
    // both listeners serve origin-form and absolute-form with a path only.
    if (!is_supported_target(msg.target())) {
        return errc::bad_request;
    }
    // One pass over the field list (in arrival order) instead of a case-insensitive tree
    // lookup per rule: a request carries a handful of fields, and this runs on every hit.
    std::ptrdiff_t fields = 0;
    std::size_t hosts = 0;
    std::size_t content_lengths = 0;
    bool content_length_not_digits = false;
    std::size_t transfer_encodings = 0;
    boost::beast::string_view transfer_encoding;
    for (const auto& f : msg.base()) {
        // Bytes are bounded by header_limit; the count is bounded too, so a head of
        // thousands of tiny fields cannot make every lookup walk a long list.
        if (++fields > max_header_fields) {
            return errc::header_too_large;
        }
        if (f.name() == http::field::host) {
            ++hosts;
        } else if (f.name() == http::field::content_length) {
            ++content_lengths;
            content_length_not_digits =
                content_length_not_digits ||
                f.value().find_first_not_of("0123456789") != boost::beast::string_view::npos;
        } else if (f.name() == http::field::transfer_encoding) {
            ++transfer_encodings;
            transfer_encoding = f.value();
        }
    }
    // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
    if (msg.version() == 11 && hosts != 1) {
        return errc::bad_request;
    }
    // RFC 9112 §6.3: repeated Content-Length fields, or a list in one ("0, 0"), are what
    // request smuggling is made of; Beast folds equal values into one. We refuse them all:
    // an honest client never sends more than one. Content-Length next to Transfer-Encoding
    // (§6.1: "ought to be handled as an error"), and a transfer coding other than exactly
    // chunked (we decode no other), are refused too.
    if (content_lengths > 1 || content_length_not_digits) {
        return errc::bad_request;
    }
    if (transfer_encodings > 0 &&
        (transfer_encodings > 1 || content_lengths > 0 || msg.version() == 10 ||
         !parser.chunked() || !boost::beast::iequals(transfer_encoding, "chunked"))) {
        return errc::bad_request;
    }
    return std::nullopt;
}

bool has_body(const http::request_parser<http::empty_body>& parser) {
    return parser.chunked() || (parser.content_length() && *parser.content_length() > 0);
}

std::optional<errc> check_request(const http::request_parser<http::empty_body>& parser) {
    if (const auto e = check_framing(parser)) {
        return e;
    }
    // A body on GET/HEAD has no meaning here (RFC 9110 §9.3.1) and would desynchronise
    // keep-alive framing if ignored: without a route that takes one, a body is a 400.
    if (has_body(parser)) {
        return errc::bad_request;
    }
    return std::nullopt;
}

}  // namespace imagegate::gateway
