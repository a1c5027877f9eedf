// Fuzzes the downstream request head path of gateway/http/server.cpp without sockets:
// http::request_parser<http::empty_body> with the session's header_limit and buffer bound,
// fed whole, one byte at a time and in chunks of a size the input picks (same verdict every
// way), then the session's framing checks (gateway/http/request_head.cpp, the code the
// server runs) and, for a GET/HEAD that passes them, the router.
#include "fuzz_check.hpp"
#include "gateway/core/request_target.hpp"
#include "gateway/http/request_head.hpp"
#include "gateway/image/route.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

namespace {

namespace http = boost::beast::http;

// server.max_header_bytes default; the session's flat_buffer holds one header plus 8 KiB.
constexpr std::uint32_t header_limit = 16 * 1024;
constexpr std::size_t buffer_limit = header_limit + 8192;

struct outcome {
    boost::system::error_code ec;
    std::optional<http::request<http::empty_body>> message;
    bool chunked = false;
    std::optional<std::uint64_t> content_length;
    std::optional<imagegate::errc> refusal;  // check_request()'s verdict on a complete head
};

// What http::async_read_header does with the session's buffer.
outcome read_header(std::string_view wire, std::size_t step) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(header_limit);
    parser.eager(false);
    outcome out;
    std::string buffer;
    std::size_t offset = 0;
    boost::system::error_code ec;
    while (!parser.is_header_done()) {
        if (!buffer.empty()) {
            const std::size_t used =
                imagegate::gateway::put_head(parser, boost::asio::buffer(buffer), ec);
            buffer.erase(0, used);
            if (ec == http::error::need_more) {
                ec = {};
            } else if (ec) {
                break;
            } else if (used > 0) {
                continue;
            }
        }
        if (parser.is_header_done()) {
            break;
        }
        if (offset == wire.size()) {
            if (!parser.got_some() && buffer.empty()) {
                ec = http::error::end_of_stream;
            } else {
                parser.put_eof(ec);
                if (!ec) {
                    ec = http::error::partial_message;
                }
            }
            break;
        }
        if (buffer.size() >= buffer_limit) {
            ec = http::error::buffer_overflow;
            break;
        }
        const std::size_t n = std::min({step, wire.size() - offset, buffer_limit - buffer.size()});
        buffer.append(wire.substr(offset, n));
        offset += n;
    }
    out.ec = ec;
    if (!ec) {
        out.chunked = parser.chunked();
        if (const auto length = parser.content_length()) {
            out.content_length = *length;
        }
        out.refusal = imagegate::gateway::check_request(parser);
        out.message.emplace(parser.release());
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 2 * buffer_limit) {
        return 0;
    }
    const std::string_view wire(reinterpret_cast<const char*>(data), size);
    const outcome whole = read_header(wire, wire.size() + 1);
    const outcome bytewise = read_header(wire, 1);
    // Chunks of a size the first byte picks (the session reads whatever each segment brings;
    // a split right after the request line once made it parse that line twice).
    const outcome halves = read_header(wire, wire.empty() ? 1 : 1 + data[0] % wire.size());
    FUZZ_CHECK(!whole.ec == !halves.ec);
    if (!whole.ec) {
        FUZZ_CHECK(whole.message->target() == halves.message->target());
        FUZZ_CHECK(whole.refusal == halves.refusal);
    }
    // Accepted or refused alike however the bytes arrive. The error code itself may differ:
    // Beast parses a start line eagerly when it is first handed the bytes, but once it has
    // seen an incomplete head it waits for CRLFCRLF, so "GET / HTTP/1.1\n..." is bad_version
    // when read at once and partial_message (at EOF) when it trickles in.
    if (!whole.ec != !bytewise.ec) {
        std::fprintf(stderr, "whole: %s, byte-wise: %s\n", whole.ec.message().c_str(),
                     bytewise.ec.message().c_str());
    }
    FUZZ_CHECK(!whole.ec == !bytewise.ec);
    if (whole.ec) {
        return 0;
    }
    FUZZ_CHECK(whole.message->method_string() == bytewise.message->method_string());
    FUZZ_CHECK(whole.message->target() == bytewise.message->target());
    FUZZ_CHECK(whole.message->version() == bytewise.message->version());
    FUZZ_CHECK(whole.chunked == bytewise.chunked);
    FUZZ_CHECK(whole.content_length == bytewise.content_length);
    FUZZ_CHECK(whole.refusal == bytewise.refusal);
    if (whole.refusal) {
        // A refused head is answered with a 4xx/5xx, never served.
        const unsigned status = imagegate::to_http_status(*whole.refusal);
        FUZZ_CHECK(status >= 400 && status < 600);
        return 0;
    }
    // A served head has a target of a form we serve (origin-form, absolute-form with a path),
    // on either listener.
    FUZZ_CHECK(imagegate::is_supported_target(whole.message->target()));
    const auto method = whole.message->method();
    if (method == http::verb::get || method == http::verb::head) {
        const auto r = imagegate::gateway::route_image(whole.message->target());
        if (r.ok()) {
            FUZZ_CHECK(r.image.canonical_id ==
                       imagegate::gateway::percent_encode(r.image.image_id));
        }
    }
    return 0;
}
