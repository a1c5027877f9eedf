// The HTTP server through real sockets: keep-alive, pipelining, deadlines, limits,
// framing errors and graceful shutdown.
#define BOOST_TEST_MODULE server_test
#include "gateway/http_server.hpp"
#include "tests/support/http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

namespace gw = imagegate::gateway;
namespace ts = imagegate::testing;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// Answers 200 "ok:<target>"; a target starting with /slow waits 300 ms first.
asio::awaitable<gw::reply> echo_handler(gw::request req) {
    if (req.target.starts_with("/slow")) {
        asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
        co_await t.async_wait(imagegate::use_nothrow);
    }
    co_return gw::make_reply(200, "ok:" + std::string(req.target), "text/plain");
}

struct server_fixture {
    asio::io_context ioc{2};
    std::atomic<int> observed{0};
    std::unique_ptr<gw::http_server> server;
    std::vector<std::thread> threads;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;

    explicit server_fixture(gw::server_options o = small_limits()) {
        server = std::make_unique<gw::http_server>(
            ioc, o, [](gw::request r) { return echo_handler(r); },
            [this](const gw::exchange_record&) { ++observed; },
            std::make_shared<spdlog::logger>("test",
                                             std::make_shared<spdlog::sinks::null_sink_mt>()));
        server->start();
        work.emplace(ioc.get_executor());
        for (int i = 0; i < 2; ++i) {
            threads.emplace_back([this] { ioc.run(); });
        }
    }
    ~server_fixture() {
        server->close_all();
        work.reset();
        for (auto& t : threads) {
            t.join();
        }
    }

    static gw::server_options small_limits() {
        gw::server_options o;
        o.port = 0;
        o.max_connections = 4;
        o.max_header_bytes = 2048;
        o.header_timeout = 300ms;
        o.idle_timeout = 400ms;
        o.write_timeout = 1s;
        return o;
    }

    ts::endpoint ep(std::chrono::milliseconds timeout = 3s) const {
        ts::endpoint e;
        e.port = server->port();
        e.tls = false;
        e.timeout = timeout;
        return e;
    }
};

std::string get(std::string_view target, std::string_view extra = "") {
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) +
           "\r\n";
}

bool starts_with(const std::string& s, std::string_view p) {
    return s.rfind(p, 0) == 0;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(keep_alive_serves_several_requests, server_fixture) {
    ts::connection c(ep());
    for (int i = 0; i < 3; ++i) {
        const auto r = c.request(http::verb::get, "/a" + std::to_string(i));
        BOOST_TEST(r.status == 200u);
        BOOST_TEST(r.body == "ok:/a" + std::to_string(i));
        BOOST_TEST(r.keep_alive);
    }
}

BOOST_FIXTURE_TEST_CASE(pipelined_requests_answer_in_order, server_fixture) {
    const std::string out = ts::raw_exchange(ep(1s), get("/one") + get("/two", "Connection: close\r\n"));
    const auto first = out.find("ok:/one");
    const auto second = out.find("ok:/two");
    BOOST_TEST(first != std::string::npos);
    BOOST_TEST(second != std::string::npos);
    BOOST_TEST(first < second);
}

BOOST_FIXTURE_TEST_CASE(head_sends_no_body, server_fixture) {
    const std::string out =
        ts::raw_exchange(ep(1s), "HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 200 OK\r\n"));
    BOOST_TEST(out.find("Content-Length: 5\r\n") != std::string::npos);
    BOOST_TEST(out.substr(out.size() - 4) == "\r\n\r\n");
}

BOOST_FIXTURE_TEST_CASE(slow_client_is_cut_off_at_header_timeout, server_fixture) {
    const auto start = std::chrono::steady_clock::now();
    const std::string out = ts::raw_exchange(ep(5s), "GET /partial HTTP/1.1\r\nHost: x\r\n");
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(out.empty());
    BOOST_TEST(took >= 250ms);
    BOOST_TEST(took < 3s);  // closed by the server long before the client's 5 s
}

BOOST_FIXTURE_TEST_CASE(idle_keep_alive_is_closed, server_fixture) {
    ts::connection c(ep());
    BOOST_TEST(c.request(http::verb::get, "/x").status == 200u);
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (server->active_sessions() != 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    BOOST_TEST(server->active_sessions() == 0u);
}

BOOST_FIXTURE_TEST_CASE(oversized_header_gets_431, server_fixture) {
    const std::string out =
        ts::raw_exchange(ep(2s), get("/big", "X-Big: " + std::string(4096, 'a') + "\r\n"));
    BOOST_TEST(starts_with(out, "HTTP/1.1 431 "));
    BOOST_TEST(out.find(R"("code":99431)") != std::string::npos);
    BOOST_TEST(out.find("Connection: close") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(framing_errors_are_refused_and_closed, server_fixture) {
    struct row {
        std::string bytes;
        std::string_view status;
    };
    const row rows[] = {
        // A body on GET.
        {"GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 400 "},
        {"GET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "HTTP/1.1 400 "},
        // HTTP/1.1 needs exactly one Host.
        {"GET /b HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
        {"GET /b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 "},
        // Unsupported versions.
        {"GET /b HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 "},
        // Not HTTP at all (a TLS ClientHello's first bytes).
        {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n",
         "HTTP/1.1 400 "},
        // Conflicting Content-Length.
        {"GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         "HTTP/1.1 400 "},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT("request " << r.bytes.substr(0, 40)) {
            const std::string out = ts::raw_exchange(ep(2s), r.bytes);
            BOOST_TEST(starts_with(out, r.status), out.substr(0, 40));
            BOOST_TEST(out.find("Connection: close") != std::string::npos);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(connections_over_the_limit_get_503, server_fixture) {
    std::vector<std::unique_ptr<ts::connection>> held;
    for (int i = 0; i < 4; ++i) {
        held.push_back(std::make_unique<ts::connection>(ep()));
        BOOST_TEST(held.back()->request(http::verb::get, "/hold").status == 200u);
    }
    const std::string out = ts::raw_exchange(ep(2s), get("/over"));
    BOOST_TEST(starts_with(out, "HTTP/1.1 503 "));
    BOOST_TEST(server->refused_connections() == 1u);
}

BOOST_AUTO_TEST_CASE(graceful_stop_finishes_in_flight_requests) {
    server_fixture f;
    ts::connection idle(f.ep());
    BOOST_TEST(idle.request(http::verb::get, "/warm").status == 200u);

    ts::response slow;
    std::thread client([&] { slow = ts::request(f.ep(), http::verb::get, "/slow"); });
    // Wait until the slow request is being handled, then stop.
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (f.server->active_sessions() < 2 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(5ms);
    }
    std::this_thread::sleep_for(50ms);
    f.server->stop();
    client.join();
    BOOST_TEST(slow.status == 200u);
    BOOST_TEST(slow.body == "ok:/slow");
    BOOST_TEST(!slow.keep_alive);  // told to close: the server is draining
    // The idle connection was closed, and nothing new is accepted.
    BOOST_CHECK_THROW(idle.request(http::verb::get, "/after"), std::exception);
    const auto until = std::chrono::steady_clock::now() + 2s;
    while (f.server->active_sessions() != 0 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(5ms);
    }
    BOOST_TEST(f.server->active_sessions() == 0u);
    BOOST_CHECK_THROW(ts::request(f.ep(500ms), http::verb::get, "/new"), std::exception);
}
