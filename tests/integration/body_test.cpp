// Request bodies through real sockets: a route's limit (under, at, over), chunked bodies
// where a route opts in, `Expect: 100-continue`, the body deadline, a pipelined request
// after a body, and bodies on routes that take none (400, connection closed).
#define BOOST_TEST_MODULE body_test
#include "gateway/core/workers.hpp"
#include "gateway/http/server.hpp"
#include "tests/integration/routed_server.hpp"
#include "tests/support/http_client.hpp"

#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace gw = imagegate::gateway;
namespace ts = imagegate::testing;
namespace http = boost::beast::http;
using namespace std::chrono_literals;

namespace {

gw::handler_result echo_body(gw::request req) {
    return gw::make_reply(200, "got:" + std::string(req.body), "text/plain");
}

// Routes: POST /upload takes up to 16 bytes by Content-Length; POST /chunks up to 16 bytes,
// chunked too; GET /x takes no body.
std::shared_ptr<const gw::router> body_routes() {
    auto r = std::make_shared<gw::router>();
    gw::route_options upload;
    upload.body.max_bytes = 16;
    r->add({http::verb::post}, "/upload", "upload", echo_body, upload);
    gw::route_options chunks;
    chunks.body.max_bytes = 16;
    chunks.body.chunked = true;
    r->add({http::verb::post}, "/chunks", "chunks", echo_body, chunks);
    r->add({http::verb::get}, "/x", "x", [](gw::request) -> gw::handler_result {
        return gw::make_reply(200, "ok", "text/plain");
    });
    return r;
}

struct body_fixture : ts::routed_server {
    body_fixture() : ts::routed_server(body_routes(), 400ms) {}
};

std::string post(std::string_view target, std::string_view body, std::string_view extra = "") {
    return "POST " + std::string(target) +
           " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
           std::string(extra) + "\r\n" + std::string(body);
}

std::string chunked(std::string_view target, std::string_view chunks, std::string_view extra = "") {
    return "POST " + std::string(target) +
           " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + std::string(extra) + "\r\n" +
           std::string(chunks);
}

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }
bool has(const std::string& s, std::string_view p) { return s.find(p) != std::string::npos; }

}  // namespace

BOOST_FIXTURE_TEST_CASE(a_body_within_the_limit_reaches_the_handler, body_fixture) {
    for (const std::string& body : {std::string("hello"), std::string(16, 'b')}) {
        BOOST_TEST_CONTEXT(body.size() << " bytes") {
            const auto out =
                ts::raw_exchange(ep(2s), post("/upload", body, "Connection: close\r\n"));
            BOOST_TEST(starts_with(out, "HTTP/1.1 200 "), out.substr(0, 40));
            BOOST_TEST(has(out, "got:" + body));
        }
    }
    // Through the client library too (its own framing).
    const auto r = ts::request(ep(), http::verb::post, "/upload", {}, "abc");
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.body == "got:abc");
}

BOOST_FIXTURE_TEST_CASE(a_body_over_the_limit_gets_413_and_the_connection_closes, body_fixture) {
    const auto out = ts::raw_exchange(
        ep(2s), post("/upload", std::string(17, 'b')) + "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 413 "), out.substr(0, 40));
    BOOST_TEST(has(out, R"("code":99413)"));
    BOOST_TEST(has(out, "Connection: close"));
    BOOST_TEST(!has(out, "HTTP/1.1 200 "));  // the unread body was not taken for a request
}

BOOST_FIXTURE_TEST_CASE(chunked_bodies_only_where_the_route_opts_in, body_fixture) {
    auto out = ts::raw_exchange(
        ep(2s), chunked("/chunks", "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", "Connection: close\r\n"));
    BOOST_TEST(starts_with(out, "HTTP/1.1 200 "), out.substr(0, 40));
    BOOST_TEST(has(out, "got:helloabc"));
    // Over the limit in total, though each chunk is small: 413.
    out = ts::raw_exchange(ep(2s),
                           chunked("/chunks", "9\r\n123456789\r\n9\r\n123456789\r\n0\r\n\r\n"));
    BOOST_TEST(starts_with(out, "HTTP/1.1 413 "), out.substr(0, 40));
    BOOST_TEST(has(out, "Connection: close"));
    // A route that takes Content-Length only: 411.
    out = ts::raw_exchange(ep(2s), chunked("/upload", "5\r\nhello\r\n0\r\n\r\n"));
    BOOST_TEST(starts_with(out, "HTTP/1.1 411 "), out.substr(0, 40));
    BOOST_TEST(has(out, "Connection: close"));
    // Broken chunk framing: 400.
    out = ts::raw_exchange(ep(2s), chunked("/chunks", "zz\r\nhello\r\n0\r\n\r\n"));
    BOOST_TEST(starts_with(out, "HTTP/1.1 400 "), out.substr(0, 40));
    // Chunked with Content-Length, or another coding: refused before routing.
    out = ts::raw_exchange(ep(2s),
                           "POST /chunks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    BOOST_TEST(starts_with(out, "HTTP/1.1 400 "), out.substr(0, 40));
}

namespace {

// A blocking loopback client that reads what has arrived so far, to see 100 Continue before
// the body is sent.
class raw_client {
public:
    explicit raw_client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
        BOOST_REQUIRE(fd_ >= 0);
        const timeval tv{.tv_sec = 3, .tv_usec = 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    }
    ~raw_client() { ::close(fd_); }
    raw_client(const raw_client&) = delete;
    raw_client& operator=(const raw_client&) = delete;

    void send(const std::string& bytes) {
        BOOST_REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                      static_cast<ssize_t>(bytes.size()));
    }
    // Reads until `until` was received or the peer closed (or 3 s passed).
    std::string read_until(std::string_view until) {
        char buf[4096];
        while (!has(got_, until)) {
            const auto n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) {
                break;
            }
            got_.append(buf, static_cast<std::size_t>(n));
        }
        return got_;
    }

private:
    int fd_;
    std::string got_;
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(expect_100_continue_is_answered_before_the_body, body_fixture) {
    raw_client c(server->port());
    c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    // Nothing of the body has been sent: the server must say 100 first.
    const auto interim = c.read_until("\r\n\r\n");
    BOOST_TEST(interim == "HTTP/1.1 100 Continue\r\n\r\n");
    c.send("hello");
    const auto all = c.read_until("got:hello");
    BOOST_TEST(has(all, "HTTP/1.1 200 "));
    BOOST_TEST(has(all, "got:hello"));
}

BOOST_FIXTURE_TEST_CASE(expect_100_continue_over_the_limit_gets_413_without_100, body_fixture) {
    raw_client c(server->port());
    c.send(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n");
    const auto out = c.read_until("\"result\":null}");
    BOOST_TEST(starts_with(out, "HTTP/1.1 413 "), out.substr(0, 40));
    BOOST_TEST(!has(out, "100 Continue"));
    BOOST_TEST(has(out, "Connection: close"));
}

// body_timeout 400 ms: a body that trickles in is cut off at one body deadline after its
// head, with a 408 the client can read.
BOOST_FIXTURE_TEST_CASE(a_slow_body_gets_408_at_the_body_deadline, body_fixture) {
    const std::string head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
    std::vector<ts::paced_step> steps{{0ms, head + "a"}};
    for (int i = 0; i < 9; ++i) {
        steps.push_back({100ms, "b"});  // all of it would take 900 ms
    }
    const auto r = ts::paced_exchange(ep(5s), steps);
    BOOST_TEST(starts_with(r.received, "HTTP/1.1 408 "), r.received.substr(0, 40));
    BOOST_TEST(has(r.received, R"("code":99408)"));
    BOOST_TEST(r.closed);
    BOOST_TEST(r.closed_after.count() >= 350);
    BOOST_TEST(r.closed_after.count() < 850);
}

BOOST_FIXTURE_TEST_CASE(a_request_pipelined_after_a_body_is_framed_right, body_fixture) {
    // The second request's head follows the first body in the same segment; then a chunked
    // body, then a GET.
    const auto out = ts::raw_exchange(
        ep(2s), post("/upload", "GET /x HTTP/1.1") + chunked("/chunks", "4\r\nGET \r\n0\r\n\r\n") +
                    "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const auto first = out.find("got:GET /x HTTP/1.1");
    const auto second = out.find("got:GET ", first + 1);
    const auto third = out.find("\r\n\r\nok", second);
    BOOST_TEST(first != std::string::npos, out);
    BOOST_TEST(second != std::string::npos);
    BOOST_TEST(third != std::string::npos);
    BOOST_TEST(!has(out, "HTTP/1.1 400 "));
}

BOOST_FIXTURE_TEST_CASE(a_body_where_no_route_takes_one_is_400_and_closes, body_fixture) {
    for (const std::string& bytes : std::initializer_list<std::string>{
             "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
             "GET /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
             "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
             "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"}) {
        BOOST_TEST_CONTEXT(bytes.substr(0, 30)) {
            const auto out = ts::raw_exchange(ep(2s), bytes + "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
            BOOST_TEST(starts_with(out, "HTTP/1.1 400 "), out.substr(0, 40));
            BOOST_TEST(has(out, "Connection: close"));
            BOOST_TEST(!has(out, "HTTP/1.1 200 "));
        }
    }
    // Content-Length: 0 is no body: served, and the connection stays usable.
    const auto out = ts::raw_exchange(ep(2s),
                                      "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                                      "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    BOOST_TEST(out.find("HTTP/1.1 200 ") != out.rfind("HTTP/1.1 200 "));
}
