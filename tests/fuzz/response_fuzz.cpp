// Fuzzes the upstream response path without sockets: arbitrary bytes go through the loop
// upstream::connection::exchange() runs — one upstream::response_reader per head, interim
// (1xx) heads skipped by upstream::head_sequence within one header limit, then the final
// response's body, then the reuse verdict upstream::may_reuse — fed whole and in small
// pieces (the verdict must not depend on how the bytes arrive). The reference is Beast's own
// http::response_parser<http::string_body> driven the same way, with RFC 9110 §15.2 restated
// here independently: both must accept or refuse alike and agree on the status, body,
// framing, interim count, bytes left over, reuse verdict and header values. Then a complete
// 200 body goes through the image validator with the capacity the handler passes, and a 4xx
// body through the error-envelope validator.
#include "fuzz_check.hpp"
#include "gateway/upstream/connection.hpp"
#include "gateway/upstream/framing.hpp"
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
using upstream::head_kind;

struct outcome {
    boost::system::error_code ec;  // first error, as exchange() would see it
    unsigned status = 0;
    std::string body;
    std::size_t body_capacity = 0;
    bool keep_alive = false;
    bool need_eof = false;
    std::size_t leftover = 0;      // bytes after the final response (never read as an answer)
    unsigned interim = 0;          // interim heads skipped before it
    bool reusable = false;         // the connection would go back to the pool
    upstream::response_head kept;  // status unused; the four kept header values
};

// The product's rules, as exchange() applies them.
struct product_rules {
    upstream::head_sequence seq;
    explicit product_rules(std::uint32_t header_limit) : seq(header_limit) {}
    std::uint32_t header_limit() const { return seq.header_limit(); }
    head_kind on_head(unsigned status, std::size_t bytes) { return seq.on_head(status, bytes); }
    unsigned interim() const { return seq.interim_responses(); }
    boost::system::error_code error() const { return seq.error(); }
    static bool reusable(bool keep_alive, bool need_eof, std::size_t leftover) {
        return upstream::may_reuse(
            {.keep_alive = keep_alive, .need_eof = need_eof, .trailing_bytes = leftover > 0});
    }
};

// The same rules restated from RFC 9110 §15.2 and RFC 9112 §9.3 for the reference: skip 1xx
// other than 101, at most eight of them, all heads within one header limit; reuse only a
// framed keep-alive response with nothing after it.
struct reference_rules {
    std::uint32_t left;
    unsigned skipped = 0;
    explicit reference_rules(std::uint32_t header_limit) : left(header_limit) {}
    std::uint32_t header_limit() const { return left; }
    head_kind on_head(unsigned status, std::size_t bytes) {
        if (status < 100 || status > 199) {
            return head_kind::final_response;
        }
        if (status == 101 || skipped == 8) {
            return head_kind::refused;
        }
        ++skipped;
        left -= static_cast<std::uint32_t>(std::min<std::size_t>(bytes, left));
        return head_kind::interim;
    }
    unsigned interim() const { return skipped; }
    boost::system::error_code error() const { return http::error::bad_status; }
    static bool reusable(bool keep_alive, bool need_eof, std::size_t leftover) {
        return keep_alive && !need_eof && leftover == 0;
    }
};

unsigned status_of(const http::response_parser<http::string_body>& p) {
    return p.get().result_int();
}
unsigned status_of(const upstream::response_reader& p) { return p.head().status; }

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

// The bytes of one exchange as they arrive: `step` at a time from `wire`, into a buffer the
// parsers consume from (buffer_ of the connection).
struct wire_feed {
    std::string_view wire;
    std::size_t step;
    std::size_t offset = 0;
    std::string buffer;  // received, not yet consumed by a parser

    // Receives the next piece; false when the peer has sent everything (end of stream).
    bool receive() {
        if (offset == wire.size()) {
            return false;
        }
        const std::size_t n = std::min(step, wire.size() - offset);
        buffer.append(wire.substr(offset, n));
        offset += n;
        return true;
    }
    std::size_t left_over() const { return buffer.size() + (wire.size() - offset); }
};

// Drives `parser` until `done(parser)`, the way http::async_read_header (eager off) and
// http::async_read (eager on) do: parse what is buffered, receive only when the parser needs
// more; at the end of the bytes, end_of_stream if nothing arrived at all, else put_eof (for
// a TLS upstream that stands for a verified close_notify). Returns the bytes consumed.
template <class Parser, class Done>
std::size_t drive(Parser& parser, wire_feed& feed, boost::system::error_code& ec, Done done) {
    std::size_t consumed = 0;
    while (!done(parser)) {
        std::size_t used = 0;
        if (!feed.buffer.empty()) {
            used = parser.put(boost::asio::buffer(feed.buffer), ec);
            feed.buffer.erase(0, used);
            consumed += used;
        }
        if (ec == http::error::need_more) {
            ec = {};
        } else if (ec) {
            return consumed;
        }
        if (done(parser)) {
            break;
        }
        if (used > 0 && !feed.buffer.empty()) {
            continue;  // progress was made; the rest may parse without new bytes
        }
        if (!feed.receive()) {
            if (!parser.got_some() && feed.buffer.empty()) {
                ec = http::error::end_of_stream;
            } else {
                parser.put_eof(ec);
                if (!ec && !done(parser)) {
                    ec = http::error::partial_message;
                }
            }
            return consumed;
        }
    }
    return consumed;
}

// One exchange's read path: heads until a final one, then its body, then the verdict.
template <class Parser, class Rules>
outcome exchange(std::string_view wire, std::size_t step, std::uint64_t body_limit) {
    const upstream::connection_options defaults{};
    Rules rules(defaults.header_limit);
    wire_feed feed{wire, step};
    outcome out;
    std::optional<Parser> parser;
    for (;;) {
        // A 1xx is a complete message to Beast: each head gets a parser of its own.
        parser.emplace();
        parser->header_limit(rules.header_limit());
        parser->body_limit(body_limit);
        parser->eager(false);
        const std::size_t head_bytes =
            drive(*parser, feed, out.ec, [](const Parser& p) { return p.is_header_done(); });
        if (out.ec) {
            out.interim = rules.interim();
            return out;
        }
        const head_kind kind = rules.on_head(status_of(*parser), head_bytes);
        out.interim = rules.interim();
        if (kind == head_kind::final_response) {
            break;
        }
        if (kind == head_kind::refused) {
            out.ec = rules.error();
            FUZZ_CHECK(out.ec);
            return out;
        }
        FUZZ_CHECK(parser->is_done());  // an interim head has no body
    }
    reserve(*parser, body_limit);
    parser->eager(true);
    drive(*parser, feed, out.ec, [](const Parser& p) { return p.is_done(); });
    if (out.ec) {
        return out;
    }
    out.leftover = feed.left_over();
    out.keep_alive = parser->keep_alive();
    out.need_eof = parser->need_eof();
    out.reusable = Rules::reusable(out.keep_alive, out.need_eof, out.leftover);
    finish(*parser, out);
    // exchange() guarantees capacity() >= size() + body_padding for the validator.
    FUZZ_CHECK(out.body.capacity() >= out.body.size() + upstream::body_padding);
    out.body_capacity = out.body.capacity();
    FUZZ_CHECK(out.body.size() <= body_limit);
    // The answer is a final response, never an interim one (Beast accepts any three digits,
    // so 0xx heads are "final" too, and the handler refuses them as unexpected statuses); the
    // pool only gets a connection whose response was framed, kept alive, followed by nothing.
    FUZZ_CHECK(out.status / 100 != 1);
    FUZZ_CHECK(out.interim <= upstream::max_interim_responses);
    FUZZ_CHECK(!out.reusable || (out.leftover == 0 && !out.need_eof && out.keep_alive));
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
    const outcome whole = exchange<reader, product_rules>(wire, wire.size() + 1, default_limit);
    // Byte-at-a-time is the harshest split; 7 is a prime that misaligns CRLFs.
    const outcome bytewise = exchange<reader, product_rules>(wire, 1, default_limit);
    const outcome sevens = exchange<reader, product_rules>(wire, 7, default_limit);
    // Beast's own parser with a field list and the rules restated: the same verdict, status,
    // body, framing, interim heads, leftover, reuse and (first occurrence of each) kept header.
    const outcome ref = exchange<reference, reference_rules>(wire, wire.size() + 1, default_limit);
    if (!ref.ec != !whole.ec) {
        std::fprintf(stderr, "reader: %s, reference: %s\n", whole.ec.message().c_str(),
                     ref.ec.message().c_str());
    }
    FUZZ_CHECK(!ref.ec == !whole.ec);
    if (!whole.ec) {
        FUZZ_CHECK(ref.status == whole.status && ref.body == whole.body);
        FUZZ_CHECK(ref.keep_alive == whole.keep_alive && ref.need_eof == whole.need_eof);
        FUZZ_CHECK(ref.leftover == whole.leftover);
        FUZZ_CHECK(ref.interim == whole.interim);
        FUZZ_CHECK(ref.reusable == whole.reusable);
        FUZZ_CHECK(ref.kept.content_type == whole.kept.content_type);
        FUZZ_CHECK(ref.kept.retry_after == whole.kept.retry_after);
        FUZZ_CHECK(ref.kept.ratelimit == whole.kept.ratelimit);
        FUZZ_CHECK(ref.kept.ratelimit_policy == whole.kept.ratelimit_policy);
    }
    // Accepted or refused alike however the bytes arrive (the error code may differ, see
    // http_request_fuzz.cpp), and an accepted message is the same message, read from the
    // same bytes, with the same verdict on the connection.
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
        FUZZ_CHECK(o->interim == whole.interim && o->leftover == whole.leftover);
        FUZZ_CHECK(o->reusable == whole.reusable);
    }
    const outcome small = exchange<reader, product_rules>(wire, wire.size() + 1, small_limit);
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
