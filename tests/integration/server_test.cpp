// The HTTP server through real sockets: keep-alive, pipelining, deadlines, limits,
// framing errors and graceful shutdown; the same session logic over TLS, and the listener's
// TLS context (protocol floor, certificate/key errors).
#define BOOST_TEST_MODULE server_test
#include "gateway/core/workers.hpp"
#include "gateway/http/server.hpp"
#include "tests/support/http_client.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <stdexcept>
#include <thread>

namespace gw = imagegate::gateway;
namespace ts = imagegate::testing;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

// Requests under /slow the handler has started on: tests stop the server once one is being
// answered (a session still reading or handshaking would be closed as idle).
std::atomic<int> slow_started{0};

// Answers 200 "ok:<target>"; a target starting with /slow waits 300 ms first.
asio::awaitable<gw::reply> echo_handler(gw::request req) {
    if (req.target.starts_with("/slow")) {
        ++slow_started;
        asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
        co_await t.async_wait(imagegate::use_nothrow);
    }
    co_return gw::make_reply(200, "ok:" + std::string(req.target), "text/plain");
}

asio::awaitable<gw::reply> throwing_handler() {
    throw std::runtime_error("thrown inside the coroutine");
    co_return gw::reply{};
}

// The fixtures' handler. Targets under /now are answered with a ready reply (as a cache hit
// is: no coroutine); /throw-now throws before returning anything, /throw-later inside its
// coroutine; /worker names the worker that runs the session; everything else goes to
// echo_handler.
gw::handler_result test_handler(gw::request req) {
    if (req.target == "/worker") {
        return gw::make_reply(200, "worker:" + std::to_string(imagegate::workers::current_index()),
                              "text/plain");
    }
    if (req.target == "/throw-now") {
        throw std::runtime_error("thrown before any coroutine");
    }
    if (req.target == "/throw-later") {
        return throwing_handler();
    }
    if (req.target.starts_with("/now")) {
        return gw::make_reply(200, "now:" + std::string(req.target), "text/plain");
    }
    return echo_handler(req);
}

// A listener certificate and key from a fresh test CA, written to files (the server context
// is built from files, as in production) that are removed with the object.
struct listener_pki {
    ts::pki certs = ts::make_test_pki();
    std::filesystem::path dir;
    std::string cert;
    std::string key;

    listener_pki() {
        static std::atomic<int> counter{0};
        dir = std::filesystem::temp_directory_path() /
              ("imagegate-server-test-" + std::to_string(::getpid()) + "-" +
               std::to_string(counter++));
        std::filesystem::create_directories(dir);
        cert = (dir / "cert.pem").string();
        key = (dir / "key.pem").string();
        ts::write_file(cert, certs.server_cert_pem);
        ts::write_file(key, certs.server_key_pem);
    }
    ~listener_pki() {
        std::error_code ignored;
        std::filesystem::remove_all(dir, ignored);
    }
    std::shared_ptr<asio::ssl::context> context() const {
        auto ctx = gw::make_listener_tls_context(cert, key);
        BOOST_REQUIRE_MESSAGE(ctx, (ctx ? std::string() : ctx.error().reason));
        return *ctx;
    }
};

struct server_fixture {
    // The production threading model: `n` workers, one io_context and one thread each.
    // Declared first: destroyed after the server.
    imagegate::workers io;
    std::atomic<int> observed{0};
    std::unique_ptr<gw::http_server> server;

    /// Plain HTTP, or TLS with `tls` (clients then trust `ca_pem`), on `n` workers.
    explicit server_fixture(gw::server_options o = small_limits(),
                            std::shared_ptr<asio::ssl::context> tls = nullptr,
                            std::string ca_pem = {}, std::size_t n = 2)
        : io(n), ca(std::move(ca_pem)) {
        server = std::make_unique<gw::http_server>(
            io.executors(), o, [](gw::request r) { return test_handler(r); },
            [this](const gw::exchange_record&) { ++observed; },
            std::make_shared<spdlog::logger>("test",
                                             std::make_shared<spdlog::sinks::null_sink_mt>()),
            std::move(tls));
        server->start();
        io.start();
    }
    ~server_fixture() {
        server->close_all();
        io.release();
        BOOST_CHECK_MESSAGE(io.wait_until(std::chrono::steady_clock::now() + 10s),
                            "the workers still had work 10 s after close_all()");
        io.stop();
        io.join();
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
        e.tls = !ca.empty();
        e.ca_pem = ca;
        e.timeout = timeout;
        return e;
    }

    std::string ca;
};

// Plain HTTP with one worker: the acceptor and every session on the same thread.
struct single_thread_server_fixture : server_fixture {
    single_thread_server_fixture() : server_fixture(small_limits(), nullptr, {}, 1) {}
};

// The same server over TLS.
struct tls_server_fixture : listener_pki, server_fixture {
    tls_server_fixture() : server_fixture(small_limits(), context(), certs.ca_cert_pem) {}
};

// Tests of the session logic run over both stream types (the TLS session is the same code
// over ssl::stream, and its framing, limits and deadlines must hold unchanged) and, for
// plain HTTP, with one and with two workers.
using both_listeners =
    boost::mpl::list<server_fixture, single_thread_server_fixture, tls_server_fixture>;

std::string get(std::string_view target, std::string_view extra = "") {
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) + "\r\n";
}

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(keep_alive_serves_several_requests, Fixture, both_listeners) {
    Fixture f;
    ts::connection c(f.ep());
    for (int i = 0; i < 3; ++i) {
        const auto r = c.request(http::verb::get, "/a" + std::to_string(i));
        BOOST_TEST(r.status == 200u);
        BOOST_TEST(r.body == "ok:/a" + std::to_string(i));
        BOOST_TEST(r.keep_alive);
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(pipelined_requests_answer_in_order, Fixture, both_listeners) {
    Fixture f;
    const std::string out =
        ts::raw_exchange(f.ep(1s), get("/one") + get("/two", "Connection: close\r\n"));
    const auto first = out.find("ok:/one");
    const auto second = out.find("ok:/two");
    BOOST_TEST(first != std::string::npos);
    BOOST_TEST(second != std::string::npos);
    BOOST_TEST(first < second);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(ready_and_suspended_answers_keep_order, Fixture, both_listeners) {
    Fixture f;
    const std::string out =
        ts::raw_exchange(f.ep(2s), get("/now-1") + get("/slow-2") + get("/now-3") +
                                       get("/x-4", "Connection: close\r\n"));
    std::size_t at = 0;
    for (const std::string_view body : {"now:/now-1", "ok:/slow-2", "now:/now-3", "ok:/x-4"}) {
        BOOST_TEST_CONTEXT(body) {
            const auto pos = out.find(body, at);
            BOOST_TEST(pos != std::string::npos);
            at = pos == std::string::npos ? at : pos;
        }
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(a_throwing_handler_answers_500_and_closes, Fixture, both_listeners) {
    Fixture f;
    for (const std::string target : {"/throw-now", "/throw-later"}) {
        BOOST_TEST_CONTEXT(target) {
            const std::string out = ts::raw_exchange(f.ep(2s), get(target) + get("/after"));
            BOOST_TEST(starts_with(out, "HTTP/1.1 500 "));
            BOOST_TEST(out.find("ok:/after") == std::string::npos);
        }
    }
    // The server goes on.
    ts::connection c(f.ep());
    BOOST_TEST(c.request(http::verb::get, "/now-again").body == "now:/now-again");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(head_sends_no_body, Fixture, both_listeners) {
    Fixture f;
    const std::string out =
        ts::raw_exchange(f.ep(1s), "HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 200 OK\r\n"));
    BOOST_TEST(out.find("Content-Length: 5\r\n") != std::string::npos);
    BOOST_TEST(out.substr(out.size() - 4) == "\r\n\r\n");
}

BOOST_AUTO_TEST_CASE_TEMPLATE(slow_client_is_cut_off_at_header_timeout, Fixture, both_listeners) {
    Fixture f;
    const auto start = std::chrono::steady_clock::now();
    const std::string out = ts::raw_exchange(f.ep(5s), "GET /partial HTTP/1.1\r\nHost: x\r\n");
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(out.empty());
    BOOST_TEST(took >= 250ms);
    BOOST_TEST(took < 3s);  // closed by the server long before the client's 5 s
}

// A connection that never sends a byte: closed by the idle reaper (plain) or the handshake
// deadline (TLS) at header_timeout (300 ms), not before, and at most a tick after.
BOOST_AUTO_TEST_CASE_TEMPLATE(silent_connection_is_closed_at_header_timeout, Fixture,
                              both_listeners) {
    Fixture f;
    ts::endpoint raw = f.ep(5s);
    raw.tls = false;
    const auto start = std::chrono::steady_clock::now();
    BOOST_TEST(ts::raw_exchange(raw, "").empty());
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(took >= 290ms);
    BOOST_TEST(took < 2s);
}

// Between requests the connection stays open for idle_timeout (400 ms).
BOOST_AUTO_TEST_CASE_TEMPLATE(idle_keep_alive_survives_within_idle_timeout, Fixture,
                              both_listeners) {
    Fixture f;
    ts::connection c(f.ep());
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(c.request(http::verb::get, "/i" + std::to_string(i)).status == 200u);
        std::this_thread::sleep_for(250ms);
    }
}

BOOST_AUTO_TEST_CASE_TEMPLATE(idle_keep_alive_is_closed, Fixture, both_listeners) {
    Fixture f;
    ts::connection c(f.ep());
    BOOST_TEST(c.request(http::verb::get, "/x").status == 200u);
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (f.server->active_sessions() != 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    BOOST_TEST(f.server->active_sessions() == 0u);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(oversized_header_gets_431, Fixture, both_listeners) {
    Fixture f;
    const std::string out =
        ts::raw_exchange(f.ep(2s), get("/big", "X-Big: " + std::string(4096, 'a') + "\r\n"));
    BOOST_TEST(starts_with(out, "HTTP/1.1 431 "));
    BOOST_TEST(out.find(R"("code":99431)") != std::string::npos);
    BOOST_TEST(out.find("Connection: close") != std::string::npos);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(framing_errors_are_refused_and_closed, Fixture, both_listeners) {
    Fixture f;
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
            const std::string out = ts::raw_exchange(f.ep(2s), r.bytes);
            BOOST_TEST(starts_with(out, r.status), out.substr(0, 40));
            BOOST_TEST(out.find("Connection: close") != std::string::npos);
        }
    }
}

// A head whose parts arrive in separate segments (or TLS records) is served, wherever the
// split falls: inside the request line, right after it (the parser has consumed the line
// and waits for the fields), inside a field, between the final CRLFs.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_head_split_anywhere_is_served, Fixture, both_listeners) {
    Fixture f;
    const std::string head = get("/split", "Connection: close\r\n");
    for (std::size_t at = 1; at < head.size(); ++at) {
        BOOST_TEST_CONTEXT("split after byte " << at << ": " << head.substr(0, at)) {
            const auto r =
                ts::paced_exchange(f.ep(2s), {{0ms, head.substr(0, at)}, {5ms, head.substr(at)}});
            BOOST_TEST(starts_with(r.received, "HTTP/1.1 200 "), r.received.substr(0, 40));
            BOOST_TEST(r.received.find("ok:/split") != std::string::npos);
        }
    }
    // The same for a pipelined second request whose fields come later.
    const auto r = ts::paced_exchange(f.ep(2s), {{0ms, get("/first") + "GET /second HTTP/1.1\r\n"},
                                                 {5ms, "Host: x\r\nConnection: close\r\n\r\n"}});
    BOOST_TEST(r.received.find("ok:/first") != std::string::npos);
    BOOST_TEST(r.received.find("ok:/second") != std::string::npos);
}

namespace {

// header_timeout 1 s: long enough to tell one deadline from two on a loaded machine.
gw::server_options deadline_limits() {
    auto o = server_fixture::small_limits();
    o.header_timeout = 1000ms;
    o.idle_timeout = 2000ms;
    return o;
}
struct deadline_fixture : server_fixture {
    deadline_fixture() : server_fixture(deadline_limits()) {}
};
struct tls_deadline_fixture : listener_pki, server_fixture {
    tls_deadline_fixture() : server_fixture(deadline_limits(), context(), certs.ca_cert_pem) {}
};
using deadline_listeners = boost::mpl::list<deadline_fixture, tls_deadline_fixture>;

}  // namespace

// The first head must be complete one header_timeout after the accept, however it trickles
// in: a client silent for 800 ms that then drips a byte every 40 ms is cut off at 1 s (plus
// at most a reaper tick), not 1 s after its first byte.
BOOST_AUTO_TEST_CASE_TEMPLATE(a_dripping_head_is_cut_off_at_one_header_timeout, Fixture,
                              deadline_listeners) {
    Fixture f;
    const std::string head = "GET /drip HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(60, 'a');
    std::vector<ts::paced_step> steps{{800ms, head.substr(0, 1)}};
    for (std::size_t i = 1; i < head.size(); ++i) {
        steps.push_back({40ms, head.substr(i, 1)});
    }
    const auto r = ts::paced_exchange(f.ep(5s), steps);
    BOOST_TEST(r.closed);
    BOOST_TEST(r.received.empty());
    BOOST_TEST(r.closed_after.count() >= 800);
    BOOST_TEST(r.closed_after.count() < 1500);  // a restarted deadline closes at ~1800 ms
}

namespace {

// A blocking loopback client on a raw descriptor: it needs no descriptor beyond its own once
// created, so it works while the process is out of them.
class raw_client {
public:
    raw_client() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        BOOST_REQUIRE(fd_ >= 0);
        const timeval tv{.tv_sec = 3, .tv_usec = 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    ~raw_client() { ::close(fd_); }
    raw_client(const raw_client&) = delete;
    raw_client& operator=(const raw_client&) = delete;

    void connect(std::uint16_t port) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    }
    // Sends `bytes`, then reads one answer: up to the end of its body (`body` seen) or EOF.
    std::string exchange(const std::string& bytes, std::string_view body) {
        BOOST_REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                      static_cast<ssize_t>(bytes.size()));
        std::string got;
        char buf[4096];
        while (got.find(body) == std::string::npos) {
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) {
                break;  // EOF, or the 3 s timeout
            }
            got.append(buf, static_cast<std::size_t>(n));
        }
        return got;
    }
    // True when the peer closed (EOF or reset) within the receive timeout.
    bool closed_by_peer() {
        char c = 0;
        return ::recv(fd_, &c, 1, 0) <= 0 && errno != EAGAIN && errno != EWOULDBLOCK;
    }

private:
    int fd_;
};

// Lowers the soft open-files limit to just above the highest descriptor in use and fills
// every free slot below it, so the process cannot open one more descriptor; undone (slots
// freed, limit restored) on destruction.
class descriptors_exhausted {
public:
    descriptors_exhausted() {
        BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        int highest = 0;
        for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
            highest = std::max(highest, std::stoi(e.path().filename().string()));
        }
        rlimit low = saved_;
        low.rlim_cur = static_cast<rlim_t>(highest + 1);
        BOOST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
        for (;;) {
            const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                BOOST_REQUIRE(errno == EMFILE);
                break;
            }
            fillers_.push_back(fd);
        }
    }
    ~descriptors_exhausted() {
        for (const int fd : fillers_) {
            ::close(fd);
        }
        ::setrlimit(RLIMIT_NOFILE, &saved_);
    }
    descriptors_exhausted(const descriptors_exhausted&) = delete;
    descriptors_exhausted& operator=(const descriptors_exhausted&) = delete;

private:
    rlimit saved_{};
    std::vector<int> fillers_;
};

// One request on a new connection, tolerating a peer that refuses it (a 503 and close, or a
// reset): whatever arrived before EOF, the 3 s timeout or an error.
std::string try_exchange(std::uint16_t port, const std::string& bytes, std::string_view body) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return {};
    }
    timeval tv{3, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string got;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0 &&
        ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size())) {
        char buf[4096];
        while (got.find(body) == std::string::npos) {
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) {
                break;
            }
            got.append(buf, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    return got;
}

struct roomy_fixture : server_fixture {
    roomy_fixture() : server_fixture(roomy()) {}
    static gw::server_options roomy() {
        auto o = small_limits();
        o.max_connections = 1000;  // the open-files limit, not this, is what runs out
        o.header_timeout = 3s;
        o.idle_timeout = 3s;
        return o;
    }
};

}  // namespace

// Out of descriptors (EMFILE): a new connection is answered 503 and closed at once instead
// of waiting in the backlog, an open keep-alive connection is still served, the failures
// are counted, and once descriptors are free again new connections are served.
BOOST_FIXTURE_TEST_CASE(out_of_descriptors_new_connections_get_503_fast, roomy_fixture) {
    raw_client open_before;
    open_before.connect(server->port());
    BOOST_TEST(starts_with(open_before.exchange(get("/before"), "ok:/before"), "HTTP/1.1 200 "));
    raw_client refused;
    {
        const descriptors_exhausted exhausted;
        const auto start = std::chrono::steady_clock::now();
        refused.connect(server->port());
        const std::string out = refused.exchange(get("/refused"), "}");
        BOOST_TEST(starts_with(out, "HTTP/1.1 503 "), out);
        // A whole answer: its own request id, then the blank line, then the body.
        const std::string head = out.substr(0, out.find("\r\n\r\n"));
        BOOST_TEST(head.find("\r\nX-Request-Id: ") != std::string::npos, out);
        BOOST_TEST(head.find("\r\nConnection: close") != std::string::npos, out);
        BOOST_TEST(out.substr(head.size(), 5) == "\r\n\r\n{", out);
        BOOST_TEST(refused.closed_by_peer());
        BOOST_TEST((std::chrono::steady_clock::now() - start < 2s));
        BOOST_TEST(
            starts_with(open_before.exchange(get("/during"), "ok:/during"), "HTTP/1.1 200 "));
        BOOST_TEST(server->accept_errors().emfile >= 1u);
        BOOST_TEST(server->refused_connections() >= 1u);
    }
    // Recovery is eventual, not instant: a connection that reaches the backlog while the
    // descriptors are being given back may still be taken with the spare one and refused.
    std::string answer;
    const auto recovery_deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
        answer = try_exchange(server->port(), get("/after"), "ok:/after");
        if (starts_with(answer, "HTTP/1.1 200 ") ||
            std::chrono::steady_clock::now() > recovery_deadline) {
            break;
        }
        std::this_thread::sleep_for(20ms);
    }
    BOOST_TEST(starts_with(answer, "HTTP/1.1 200 "), answer);
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

BOOST_AUTO_TEST_CASE_TEMPLATE(graceful_stop_finishes_in_flight_requests, Fixture, both_listeners) {
    Fixture f;
    ts::connection idle(f.ep());
    BOOST_TEST(idle.request(http::verb::get, "/warm").status == 200u);

    ts::response slow;
    const int before = slow_started.load();
    std::thread client([&] { slow = ts::request(f.ep(), http::verb::get, "/slow"); });
    // Wait until the slow request is being handled, then stop.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (slow_started.load() == before && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(2ms);
    }
    BOOST_TEST(slow_started.load() > before);
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

BOOST_FIXTURE_TEST_CASE(tls_handshakes_count_against_max_connections, tls_server_fixture) {
    // Four connections that never send a ClientHello fill the limit of 4 until the
    // handshake deadline (header_timeout, 300 ms) closes them.
    ts::endpoint tcp_only = ep(5s);
    tcp_only.tls = false;
    std::vector<std::thread> silent;
    for (int i = 0; i < 4; ++i) {
        silent.emplace_back([tcp_only] { ts::raw_exchange(tcp_only, ""); });
    }
    const auto until = std::chrono::steady_clock::now() + 2s;
    while (server->active_sessions() < 4 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(2ms);
    }
    BOOST_TEST(server->active_sessions() == 4u);
    // A fifth is closed at once: no plain-text 503 on a TLS port, nothing a client could read.
    BOOST_TEST(ts::raw_exchange(tcp_only, "").empty());
    BOOST_TEST(server->refused_connections() == 1u);
    for (auto& t : silent) {
        t.join();
    }
    // The clients saw the close; the sessions count the failure right after it.
    const auto counted = std::chrono::steady_clock::now() + 2s;
    while (server->tls_handshake_failures() < 4 && std::chrono::steady_clock::now() < counted) {
        std::this_thread::sleep_for(2ms);
    }
    BOOST_TEST(server->tls_handshake_failures() == 4u);
    BOOST_TEST(ts::request(ep(), http::verb::get, "/after").status == 200u);
}

BOOST_AUTO_TEST_CASE(listener_tls_context_refuses_old_protocols_and_renegotiation) {
    const listener_pki pki;
    const auto ctx = pki.context();
    SSL_CTX* native = ctx->native_handle();
    BOOST_TEST(SSL_CTX_get_min_proto_version(native) == TLS1_2_VERSION);
    const auto options = SSL_CTX_get_options(native);
    BOOST_TEST((options & SSL_OP_NO_COMPRESSION) != 0u);
#ifdef SSL_OP_NO_RENEGOTIATION
    BOOST_TEST((options & SSL_OP_NO_RENEGOTIATION) != 0u);
#endif
}

BOOST_AUTO_TEST_CASE(listener_tls_context_errors_name_the_file_never_the_key) {
    const listener_pki pki;
    const listener_pki other;
    // A key that belongs to another certificate.
    const auto mismatch = gw::make_listener_tls_context(pki.cert, other.key);
    BOOST_REQUIRE(!mismatch);
    BOOST_TEST(mismatch.error().key == "server.tls_key");
    BOOST_TEST(mismatch.error().reason.find("does not match") != std::string::npos);
    BOOST_TEST(mismatch.error().reason.find(other.key) != std::string::npos);
    // Not a certificate.
    const auto bad_cert = gw::make_listener_tls_context(pki.key, pki.key);
    BOOST_REQUIRE(!bad_cert);
    BOOST_TEST(bad_cert.error().key == "server.tls_cert");
    BOOST_TEST(bad_cert.error().reason.find(pki.key) != std::string::npos);
    // Not a key.
    const auto bad_key = gw::make_listener_tls_context(pki.cert, pki.cert);
    BOOST_REQUIRE(!bad_key);
    BOOST_TEST(bad_key.error().key == "server.tls_key");
    for (const auto& e : {mismatch.error(), bad_cert.error(), bad_key.error()}) {
        BOOST_TEST(e.reason.find("PRIVATE KEY") == std::string::npos);
        BOOST_TEST(e.reason.find(other.certs.server_key_pem.substr(40, 20)) == std::string::npos);
    }
}

// Connections go to the workers in turn, and a session runs on its worker's thread.
BOOST_FIXTURE_TEST_CASE(connections_are_spread_over_the_workers_in_turn, server_fixture) {
    std::vector<std::string> seen;
    for (int i = 0; i < 4; ++i) {
        // One at a time: each is accepted before the next connects.
        ts::connection c(ep());
        seen.push_back(c.request(http::verb::get, "/worker").body);
        BOOST_TEST(c.request(http::verb::get, "/worker").body == seen.back());
    }
    const std::vector<std::string> expected{"worker:0", "worker:1", "worker:0", "worker:1"};
    BOOST_TEST(seen == expected, boost::test_tools::per_element());
}

// wait_drained() blocks until the last session ended, bounded by its deadline, with no
// polling: it returns as soon as the slow request's session is gone.
BOOST_FIXTURE_TEST_CASE(wait_drained_returns_when_the_last_session_ends, server_fixture) {
    ts::response slow;
    const int before = slow_started.load();
    std::thread client([&] { slow = ts::request(ep(), http::verb::get, "/slow"); });
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (slow_started.load() == before && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(2ms);
    }
    BOOST_TEST(server->active_sessions() == 1u);
    server->stop();
    // The slow request takes 300 ms: a 20 ms wait ends at its deadline.
    BOOST_TEST(!server->wait_drained(std::chrono::steady_clock::now() + 20ms));
    const auto started = std::chrono::steady_clock::now();
    BOOST_TEST(server->wait_drained(std::chrono::steady_clock::now() + 5s));
    BOOST_TEST((std::chrono::steady_clock::now() - started) < 1s);
    BOOST_TEST(server->active_sessions() == 0u);
    client.join();
    BOOST_TEST(slow.status == 200u);
}
