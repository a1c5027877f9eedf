// Fuzzes the upstream response path without sockets: arbitrary bytes go through
// upstream::response_reader (the parser upstream::connection::exchange() runs) with its
// limits, fed whole and in small pieces (the verdict must not depend on how the bytes
// arrive), and through Beast's own http::response_parser<http::string_body> as a reference:
// both must accept or refuse alike and keep the same status, body, framing and header
// values. Then a complete 200 body goes through the image validator with the capacity the
// handler passes, and a 4xx body through the error-envelope validator.
#include "fuzz_check.hpp"
#include "gateway/upstream/connection.hpp"
#include "gateway/upstream/headers.hpp"
#include "gateway/upstream/response_reader.hpp"
#include "validator_input.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace {

namespace http = boost::beast::http;
namespace upstream = imagegate::upstream;

struct outcome {
    boost::system::error_code ec;  // first error, as exchange() would see it
    unsigned status = 0;
    std::string body;
    std::size_t body_capacity = 0;
    bool keep_alive = false;
    bool need_eof = false;
    std::size_t leftover = 0;      // bytes after the message (makes the connection not reusable)
    upstream::response_head kept;  // status unused; the four kept header values
};

// What each parser kind hands over once the message is done.
void finish(http::response_parser<http::string_body>& parser, outcome& out) {
    auto msg = parser.release();
    out.status = msg.result_int();
    out.kept.content_type = upstream::keep_header_value(msg[http::field::content_type]);
    out.kept.retry_after = upstream::keep_header_value(msg[http::field::retry_after]);
    out.kept.ratelimit = upstream::keep_header_value(msg["RateLimit"]);
    out.kept.ratelimit_policy = upstream::keep_header_value(msg["RateLimit-Policy"]);
    out.body = std::move(msg.body());
    if (out.body.capacity() < out.body.size() + upstream::body_padding) {
        out.body.reserve(out.body.size() + upstream::body_padding);
    }
}

void finish(upstream::response_reader& parser, outcome& out) {
    out.kept = parser.take_head();
    out.status = out.kept.status;
    out.body = parser.take_body();
}

// The reference parser needs the reservation exchange() used to make by hand; the reader
// makes it itself when the head announces a length.
void reserve(http::response_parser<http::string_body>& parser, std::uint64_t body_limit) {
    if (const auto length = parser.content_length(); length && *length <= body_limit) {
        parser.get().body().reserve(static_cast<std::size_t>(*length) + upstream::body_padding);
    }
}

void reserve(upstream::response_reader&, std::uint64_t) {}

// Feeds `wire` to a fresh parser `step` bytes at a time, the way http::async_read_header and
// then http::async_read drive it (eager off for the head, on for the body; put_eof when the
// bytes run out, which for a TLS upstream stands for a verified close_notify).
template <class Parser>
outcome parse(std::string_view wire, std::size_t step, std::uint64_t body_limit) {
    const upstream::connection_options defaults{};
    Parser parser;
    parser.header_limit(defaults.header_limit);
    parser.body_limit(body_limit);
    parser.eager(false);

    outcome out;
    std::string buffer;  // received, not yet consumed by the parser
    std::size_t offset = 0;
    bool reserved = false;
    boost::system::error_code ec;
    while (!parser.is_done()) {
        // Parse what is buffered; read more only when the parser needs more.
        std::size_t used = 0;
        if (!buffer.empty()) {
            used = parser.put(boost::asio::buffer(buffer), ec);
            buffer.erase(0, used);
        }
        if (ec == http::error::need_more) {
            ec = {};
        } else if (ec) {
            break;
        }
        if (parser.is_header_done() && !reserved) {
            reserved = true;
            reserve(parser, body_limit);
            parser.eager(true);
            continue;
        }
        if (parser.is_done()) {
            break;
        }
        if (used > 0 && !buffer.empty()) {
            continue;  // progress was made; the rest may parse without new bytes
        }
        if (offset == wire.size()) {
            // The stream ended. http::read reports end_of_stream when nothing arrived at
            // all, else lets the parser decide whether EOF completes the message.
            if (!parser.got_some() && buffer.empty()) {
                ec = http::error::end_of_stream;
            } else {
                parser.put_eof(ec);
            }
            break;
        }
        const std::size_t n = std::min(step, wire.size() - offset);
        buffer.append(wire.substr(offset, n));
        offset += n;
    }
    out.ec = ec;
    out.leftover = buffer.size() + (wire.size() - offset);
    if (ec || !parser.is_done()) {
        if (!ec) {
            out.ec = http::error::partial_message;
        }
        return out;
    }
    out.keep_alive = parser.keep_alive();
    out.need_eof = parser.need_eof();
    finish(parser, out);
    // exchange() guarantees capacity() >= size() + body_padding for the validator.
    FUZZ_CHECK(out.body.capacity() >= out.body.size() + upstream::body_padding);
    out.body_capacity = out.body.capacity();
    FUZZ_CHECK(out.body.size() <= body_limit);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 128 * 1024) {
        return 0;
    }
    const std::string_view wire(reinterpret_cast<const char*>(data), size);
    // The product default, and the smallest limit config accepts (1 KiB) so that the
    // body_limit paths are reachable with small inputs.
    const std::uint64_t default_limit = upstream::connection_options{}.body_limit;
    const std::uint64_t small_limit = 1024;

    using reader = imagegate::upstream::response_reader;
    using reference = http::response_parser<http::string_body>;
    const outcome whole = parse<reader>(wire, wire.size() + 1, default_limit);
    // Byte-at-a-time is the harshest split; 7 is a prime that misaligns CRLFs.
    const outcome bytewise = parse<reader>(wire, 1, default_limit);
    const outcome sevens = parse<reader>(wire, 7, default_limit);
    // Beast's own parser with a field list: the same verdict, status, body, framing and
    // (first occurrence of each) kept header value.
    const outcome ref = parse<reference>(wire, wire.size() + 1, default_limit);
    if (!ref.ec != !whole.ec) {
        std::fprintf(stderr, "reader: %s, reference: %s\n", whole.ec.message().c_str(),
                     ref.ec.message().c_str());
    }
    FUZZ_CHECK(!ref.ec == !whole.ec);
    if (!whole.ec) {
        FUZZ_CHECK(ref.status == whole.status && ref.body == whole.body);
        FUZZ_CHECK(ref.keep_alive == whole.keep_alive && ref.need_eof == whole.need_eof);
        FUZZ_CHECK(ref.leftover == whole.leftover);
        FUZZ_CHECK(ref.kept.content_type == whole.kept.content_type);
        FUZZ_CHECK(ref.kept.retry_after == whole.kept.retry_after);
        FUZZ_CHECK(ref.kept.ratelimit == whole.kept.ratelimit);
        FUZZ_CHECK(ref.kept.ratelimit_policy == whole.kept.ratelimit_policy);
    }
    // Accepted or refused alike however the bytes arrive (the error code may differ, see
    // http_request_fuzz.cpp), and an accepted message is the same message.
    for (const outcome* o : {&bytewise, &sevens}) {
        if (!o->ec != !whole.ec) {
            std::fprintf(stderr, "whole: %s, split: %s\n", whole.ec.message().c_str(),
                         o->ec.message().c_str());
        }
        FUZZ_CHECK(!o->ec == !whole.ec);
        if (whole.ec) {
            continue;
        }
        FUZZ_CHECK(o->status == whole.status);
        FUZZ_CHECK(o->body == whole.body);
        FUZZ_CHECK(o->keep_alive == whole.keep_alive && o->need_eof == whole.need_eof);
    }
    const outcome small = parse<reader>(wire, wire.size() + 1, small_limit);
    if (!small.ec) {
        FUZZ_CHECK(small.status == whole.status && small.body == whole.body);
    }

    if (whole.ec) {
        return 0;
    }
    static simdjson::ondemand::parser json;
    if (whole.status == 200) {
        // The handler passes body.capacity() as the capacity: parse in place, as production.
        const auto v = imagegate::validate::validate_image(whole.body, whole.body_capacity,
                                                           imagegate::fuzz::default_image_id, json);
        // And through both buffer paths with the cross-checks.
        const auto both = imagegate::fuzz::validate_both_ways(
            whole.body, imagegate::fuzz::default_image_id, json);
        FUZZ_CHECK(v == both);
    } else if (whole.status >= 400 && whole.status < 500) {
        const auto env =
            imagegate::validate::validate_error_envelope(whole.body, whole.body_capacity, json);
        (void)env;
    }
    return 0;
}
