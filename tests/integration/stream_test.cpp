// Streamed request bodies and streamed replies through real sockets: a body pulled in bounded
// chunks (Content-Length and chunked), the limit and the deadline while streaming, the rest
// of an unread body discarded so a pipelined request still parses, 100-continue on the first
// pull, and replies written piece by piece (Content-Length passed through, else chunked; a cut
// body closes the connection, never a second response).
#define BOOST_TEST_MODULE stream_test
#include "gateway/core/workers.hpp"
#include "gateway/http/server.hpp"
#include "tests/integration/routed_server.hpp"
#include "tests/support/http_client.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <string>

namespace gw = imagegate::gateway;
namespace ts = imagegate::testing;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// Pulls the whole body; answers how many bytes, in how many pulls, the largest pull, and a
// checksum, or the body's error as the session would name it.
imagegate::asio::awaitable<gw::reply> count_body(gw::request req) {
    std::uint64_t bytes = 0;
    std::uint64_t pulls = 0;
    std::uint64_t largest = 0;
    std::uint64_t sum = 0;
    if (req.body_stream != nullptr) {
        for (;;) {
            auto got = co_await req.body_stream->next();
            if (!got) {
                const auto ec = got.error();
                if (ec.category() == imagegate::imagegate_category()) {
                    gw::reply r = gw::make_error_reply(static_cast<imagegate::errc>(ec.value()));
                    r.close = true;
                    co_return r;
                }
                gw::reply r = gw::make_reply(500, "gone", "text/plain");
                r.close = true;
                co_return r;
            }
            if (got->empty()) {
                break;
            }
            ++pulls;
            bytes += got->size();
            largest = std::max<std::uint64_t>(largest, got->size());
            for (const char c : *got) {
                sum += static_cast<unsigned char>(c);
            }
        }
    }
    co_return gw::make_reply(200,
                             "bytes=" + std::to_string(bytes) + " pulls=" + std::to_string(pulls) +
                                 " largest=" + std::to_string(largest) +
                                 " sum=" + std::to_string(sum),
                             "text/plain");
}

// Reads nothing of the body and answers at once.
gw::handler_result ignore_body(gw::request) { return gw::make_reply(202, "ignored", "text/plain"); }

// Streams an answer: `/out/length` with Content-Length, `/out/chunked` without, `/out/cut`
// announces more than it writes.
imagegate::asio::awaitable<gw::reply> stream_out(gw::request req) {
    const std::string piece(1000, 'x');
    const std::string_view path = req.target;
    const bool with_length = path == "/out/length";
    const bool cut = path == "/out/cut";
    gw::reply r;
    r.status = 200;
    r.route = "out";
    auto& out = *req.reply_out;
    const std::optional<std::uint64_t> length =
        with_length || cut ? std::optional<std::uint64_t>(5 * piece.size()) : std::nullopt;
    if (!co_await out.start(200, "Content-Type: text/plain\r\n", length)) {
        r.close = true;
        co_return r;
    }
    const int pieces = cut ? 2 : 5;
    for (int i = 0; i < pieces; ++i) {
        if (!co_await out.write(piece)) {
            r.close = true;
            co_return r;
        }
        // A pause between pieces: the client sees them arrive over time.
        auto ex = co_await imagegate::asio::this_coro::executor;
        imagegate::asio::steady_timer t(ex, 5ms);
        co_await t.async_wait(imagegate::use_nothrow);
    }
    if (cut) {
        r.close = true;  // the body could not be completed
        co_return r;
    }
    if (!co_await out.finish()) {
        r.close = true;
    }
    co_return r;
}

std::shared_ptr<const gw::router> stream_routes() {
    auto r = std::make_shared<gw::router>();
    gw::route_options in;
    in.body.max_bytes = 1 << 20;
    in.body.chunked = true;
    in.body.streaming = true;
    in.body.timeout = 600ms;
    r->add({http::verb::post, http::verb::put}, "/in", "in", count_body, in);
    r->add({http::verb::post}, "/ignore", "ignore", ignore_body, in);
    r->add({http::verb::get}, "/x", "x", [](gw::request) -> gw::handler_result {
        return gw::make_reply(200, "ok", "text/plain");
    });
    gw::route_options out;
    out.body.streaming_reply = true;
    r->add({http::verb::get}, "/out/*", "out", stream_out, out);
    return r;
}

struct stream_fixture : ts::routed_server {
    stream_fixture() : ts::routed_server(stream_routes(), 5s) {}  // the route's own 600 ms must win
};

bool has(const std::string& s, std::string_view p) { return s.find(p) != std::string::npos; }
bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

std::uint64_t field(const std::string& body, std::string_view name) {
    const auto at = body.find(std::string(name) + "=");
    BOOST_REQUIRE(at != std::string::npos);
    return std::stoull(body.substr(at + name.size() + 1));
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(a_streamed_body_arrives_whole_in_bounded_pulls, stream_fixture) {
    std::string body(300 * 1024 + 7, '\0');
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < body.size(); ++i) {
        body[i] = static_cast<char>('a' + i % 26);
        sum += static_cast<unsigned char>(body[i]);
    }
    const auto r = ts::request(ep(), http::verb::post, "/in", {}, body);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(field(r.body, "bytes") == body.size());
    BOOST_TEST(field(r.body, "sum") == sum);
    BOOST_TEST(field(r.body, "largest") <= 16u * 1024);  // never the whole body at once
    BOOST_TEST(field(r.body, "pulls") >= body.size() / (16 * 1024));
}

BOOST_FIXTURE_TEST_CASE(a_chunked_streamed_body_is_decoded_and_limited, stream_fixture) {
    auto out = ts::raw_exchange(ep(2s),
                                "POST /in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                "chunked\r\nConnection: close\r\n\r\n"
                                "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 200 "), out.substr(0, 40));
    BOOST_TEST(has(out, "bytes=8 "));
    // Over the limit while streaming: 413 from the pull, connection closed.
    const std::string big(600 * 1024, 'z');
    std::string chunks;
    for (int i = 0; i < 2; ++i) {
        chunks += "96000\r\n" + big + "\r\n";
    }
    out = ts::raw_exchange(ep(3s),
                           "POST /in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                           "chunked\r\n\r\n" +
                               chunks + "0\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 413 "), out.substr(0, 40));
    BOOST_TEST(has(out, "Connection: close"));
    // Declared over the limit: refused before the handler, as for buffered bodies.
    out =
        ts::raw_exchange(ep(2s), "POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 413 "), out.substr(0, 40));
}

BOOST_FIXTURE_TEST_CASE(an_unread_body_is_discarded_and_the_next_request_parses, stream_fixture) {
    const std::string body(40000, 'q');
    const auto out = ts::raw_exchange(
        ep(2s),
        "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n\r\n" + body + "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 202 "), out.substr(0, 40));
    // The body's bytes were not read as a request: the pipelined GET is answered.
    BOOST_TEST(has(out, "HTTP/1.1 200 "));
    BOOST_TEST(!has(out, "HTTP/1.1 400 "));
}

BOOST_FIXTURE_TEST_CASE(a_stalled_streamed_body_gets_408_by_the_routes_deadline, stream_fixture) {
    const auto started = std::chrono::steady_clock::now();
    const auto res = ts::paced_exchange(
        ep(4s), {{0ms, "POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"}});
    const auto took = std::chrono::steady_clock::now() - started;
    BOOST_TEST(starts_with(res.received, "HTTP/1.1 408 "), res.received.substr(0, 40));
    BOOST_TEST(res.closed);
    BOOST_TEST(took < 3s);  // the route's 600 ms, not the server's 5 s
}

BOOST_FIXTURE_TEST_CASE(expect_100_continue_is_sent_on_the_first_pull, stream_fixture) {
    const auto res =
        ts::paced_exchange(ep(3s), {{0ms,
                                     "POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                     "Expect: 100-continue\r\nConnection: close\r\n\r\n"},
                                    {100ms, "hello"}});
    BOOST_TEST(starts_with(res.received, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "),
               res.received.substr(0, 60));
    BOOST_TEST(has(res.received, "bytes=5 "));
    // A handler that answers without pulling never sends 100: the connection closes after
    // its answer instead of waiting for a body the client holds back.
    const auto ignored =
        ts::paced_exchange(ep(3s), {{0ms,
                                     "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                     "Expect: 100-continue\r\n\r\n"}});
    BOOST_TEST(starts_with(ignored.received, "HTTP/1.1 202 "), ignored.received.substr(0, 40));
    BOOST_TEST(has(ignored.received, "Connection: close"));
    BOOST_TEST(ignored.closed);
}

BOOST_FIXTURE_TEST_CASE(a_streamed_reply_keeps_its_length_or_is_chunked, stream_fixture) {
    ts::connection c(ep());
    const auto with_length = c.request(http::verb::get, "/out/length");
    BOOST_TEST(with_length.status == 200u);
    BOOST_TEST(with_length.header("Content-Length") == "5000");
    BOOST_TEST(with_length.count("Transfer-Encoding") == 0u);
    BOOST_TEST(with_length.body == std::string(5000, 'x'));
    BOOST_TEST(!with_length.header("X-Request-Id").empty());
    // Same connection: the streamed reply left it usable.
    const auto chunked = c.request(http::verb::get, "/out/chunked");
    BOOST_TEST(chunked.status == 200u);
    BOOST_TEST(chunked.header("Transfer-Encoding") == "chunked");
    BOOST_TEST(chunked.count("Content-Length") == 0u);
    BOOST_TEST(chunked.body == std::string(5000, 'x'));
    const auto head = c.request(http::verb::head, "/out/length");
    BOOST_TEST(head.status == 200u);
    BOOST_TEST(head.header("Content-Length") == "5000");
    BOOST_TEST(head.body.empty());
    BOOST_TEST(c.request(http::verb::get, "/x").body == "ok");
}

BOOST_FIXTURE_TEST_CASE(a_cut_streamed_reply_closes_the_connection, stream_fixture) {
    const auto res = ts::paced_exchange(
        ep(3s),
        {{0ms, "GET /out/cut HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n"}});
    BOOST_TEST(starts_with(res.received, "HTTP/1.1 200 "), res.received.substr(0, 40));
    BOOST_TEST(has(res.received, "Content-Length: 5000"));
    BOOST_TEST(res.closed);  // the client sees the body was cut
    // Exactly one response: nothing after the 2000 bytes written, no error reply appended.
    const auto body_at = res.received.find("\r\n\r\n");
    BOOST_TEST(res.received.size() - body_at - 4 == 2000u);
    BOOST_TEST(res.received.find("HTTP/1.1", 1) == std::string::npos);
}
