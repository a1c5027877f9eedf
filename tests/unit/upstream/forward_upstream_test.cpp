// The upstream client's forwarded calls against the in-process emulator over verified TLS:
// a body streamed up in pieces (by length and chunked), the answer streamed down, the header
// allowlists both ways, the caller's credential instead of the token, one attempt only (a
// reset POST is not retried), and a failing client body returned as its own error.
#define BOOST_TEST_MODULE forward_upstream_test
#include "gateway/core/workers.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/upstream/forward_headers.hpp"
#include "gateway/upstream/tls.hpp"
#include "tests/emulator/emulator.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <future>
#include <vector>

namespace up = imagegate::upstream;
namespace asio = boost::asio;
namespace emu = imagegate::testing;
namespace http = boost::beast::http;
using imagegate::errc;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view account = "023e105f4ecef8ad9ca31a8372d0c353";

// The body in pieces, then the end (or `fail_with` instead of the end).
class pieces_body final : public up::forward_body {
public:
    explicit pieces_body(std::vector<std::string> pieces, boost::system::error_code fail_with = {})
        : pieces_(std::move(pieces)), fail_with_(fail_with) {}
    asio::awaitable<boost::system::result<std::span<const char>>> next() override {
        if (next_ < pieces_.size()) {
            const auto& p = pieces_[next_++];
            co_return std::span<const char>(p.data(), p.size());
        }
        if (fail_with_) {
            co_return fail_with_;
        }
        co_return std::span<const char>{};
    }

private:
    std::vector<std::string> pieces_;
    boost::system::error_code fail_with_;
    std::size_t next_ = 0;
};

// Keeps the head and the body, and how many pieces the body came in.
class keeping_sink final : public up::forward_sink {
public:
    asio::awaitable<bool> on_head(const up::forward_head& h) override {
        head = h;
        co_return true;
    }
    asio::awaitable<bool> on_body(std::span<const char> bytes) override {
        body.append(bytes.data(), bytes.size());
        ++pieces;
        largest = std::max(largest, bytes.size());
        co_return true;
    }
    up::forward_head head;
    std::string body;
    std::size_t pieces = 0;
    std::size_t largest = 0;
};

struct fixture {
    imagegate::workers io{1};
    imagegate::workers emulator_io{1};
    std::unique_ptr<emu::emulator> server;
    std::unique_ptr<up::client> client;

    fixture() {
        emu::emulator_options o;
        o.any_image_exists = true;
        o.single_threaded = true;
        o.credentials.push_back({.token = "caller-token", .email = {}, .key = {}, .accounts = {}});
        server = std::make_unique<emu::emulator>(emulator_io.executor(0), std::move(o));
        server->start();
        up::client_options c;
        c.host = "127.0.0.1";
        c.port = server->port();
        c.token = server->token();
        c.pool.max_connections = 4;
        client = std::make_unique<up::client>(
            io.executors(), c,
            up::make_tls_context({.ca_file = {}, .ca_pem = server->ca_pem()}).value(),
            std::make_shared<spdlog::logger>("test",
                                             std::make_shared<spdlog::sinks::null_sink_mt>()));
        emulator_io.start();
        io.start();
    }
    ~fixture() {
        client->shutdown();
        server->stop();
        io.release();
        emulator_io.release();
        const auto until = std::chrono::steady_clock::now() + 10s;
        BOOST_CHECK(io.wait_until(until) && emulator_io.wait_until(until));
        io.stop();
        emulator_io.stop();
        io.join();
        emulator_io.join();
        client.reset();
    }

    boost::system::result<up::forward_outcome> forward(
        up::forward_request req, up::forward_body* body, up::forward_sink& sink,
        std::shared_ptr<const up::credential> cred = nullptr) {
        auto f =
            asio::co_spawn(io.executor(0),
                           client->forward(std::move(req), body, &sink,
                                           std::chrono::steady_clock::now() + 10s, std::move(cred)),
                           asio::use_future);
        BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
        return f.get();
    }
};

bool has(std::string_view s, std::string_view p) { return s.find(p) != std::string_view::npos; }

up::forward_request post_echo(std::optional<std::uint64_t> length) {
    up::forward_request r;
    r.method = http::verb::post;
    r.target = "/accounts/" + std::string(account) + "/workers/scripts?x=1";
    http::fields client;
    client.set(http::field::content_type, "application/octet-stream");
    client.set(http::field::accept, "application/json");
    client.set(http::field::cookie, "session=secret");
    client.set(http::field::authorization, "Bearer client-key");
    client.set(http::field::connection, "keep-alive, x-hop");
    client.set("X-Hop", "1");
    r.header_lines = up::forward_request_headers(client);
    r.has_body = true;
    r.content_length = length;
    return r;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(forward_upstream, fixture)

BOOST_AUTO_TEST_CASE(a_body_goes_up_in_pieces_by_length_and_chunked) {
    const std::string piece(20000, 'p');
    for (const bool by_length : {true, false}) {
        BOOST_TEST_CONTEXT((by_length ? "Content-Length" : "chunked")) {
            pieces_body body({piece, piece, piece});
            keeping_sink sink;
            const auto r =
                forward(post_echo(by_length ? std::optional<std::uint64_t>(3 * piece.size())
                                            : std::nullopt),
                        &body, sink);
            BOOST_REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message()));
            BOOST_TEST(r->status == 200u);
            BOOST_TEST(r->complete);
            BOOST_TEST(sink.head.status == 200u);
            BOOST_TEST(has(sink.body, R"("method":"POST")"));
            BOOST_TEST(has(sink.body, R"("body_bytes":60000)"), sink.body);
            BOOST_TEST(has(sink.body, R"("query":"x=1")"));
            // Only the allowlist went up: no cookie, no hop-by-hop header; the credential is
            // the gateway's token, not the client key.
            BOOST_TEST(!has(sink.body, R"("cookie")"));
            BOOST_TEST(!has(sink.body, R"("x-hop")"));
            BOOST_TEST(!has(sink.body, R"("connection")"));
            BOOST_TEST(has(sink.body, R"("content-type")"));
            BOOST_TEST(server->requests_with("client-key") == 0u);
            // And only the allowlist came down: Content-Type, Ratelimit, cf-ray; no cookie.
            BOOST_TEST(has(sink.head.header_lines, "Content-Type: application/json\r\n"));
            BOOST_TEST(has(sink.head.header_lines, "cf-ray: "));
            BOOST_TEST(has(sink.head.header_lines, "Ratelimit: "));
            BOOST_TEST(!has(sink.head.header_lines, "et-Cookie"));
            BOOST_TEST(!has(sink.head.header_lines, "ache-Control"));
            BOOST_TEST(!sink.head.ratelimit.empty());
        }
    }
    BOOST_TEST(server->requests_with(server->token()) == 2u);
}

BOOST_AUTO_TEST_CASE(a_large_answer_comes_down_in_bounded_pieces) {
    up::forward_request r;
    r.target = "/accounts/" + std::string(account) + "/images/v2?per_page=5000";
    keeping_sink sink;
    const auto got = forward(r, nullptr, sink);
    BOOST_REQUIRE(got.has_value());
    BOOST_TEST(got->status == 200u);
    BOOST_TEST(got->complete);
    BOOST_TEST(sink.body.size() == got->body_bytes);
    BOOST_TEST(has(sink.body, R"("images":[)"));
    BOOST_TEST(sink.largest <= 16u * 1024);
}

BOOST_AUTO_TEST_CASE(the_callers_credential_replaces_the_token) {
    up::forward_request r;
    r.method = http::verb::delete_;
    r.target = "/accounts/" + std::string(account) + "/images/v1/gone-1";
    keeping_sink sink;
    auto cred = std::make_shared<up::credential>();
    cred->bearer = "caller-token";
    const auto got = forward(r, nullptr, sink, cred);
    BOOST_REQUIRE(got.has_value());
    BOOST_TEST(got->status == 200u);
    BOOST_TEST(server->requests_with("caller-token") == 1u);
    BOOST_TEST(server->requests_with(server->token()) == 0u);
    // The image is gone upstream now.
    keeping_sink again;
    r.method = http::verb::get;
    BOOST_TEST(forward(r, nullptr, again, cred)->status == 404u);
}

BOOST_AUTO_TEST_CASE(a_reset_post_is_not_retried) {
    emu::fault_rule reset;
    reset.kind = emu::fault_kind::reset;
    reset.times = 1;
    server->add_fault(reset);
    pieces_body body({"abc"});
    keeping_sink sink;
    const auto got = forward(post_echo(3), &body, sink);
    BOOST_REQUIRE(got.has_error());
    BOOST_TEST((got.error() == make_error_code(errc::upstream_protocol_error) ||
                got.error() == make_error_code(errc::upstream_connect_failed)),
               got.error().message());
    BOOST_TEST(server->snapshot().by_method["POST"] == 1u);  // one attempt, no retry
}

BOOST_AUTO_TEST_CASE(a_failing_client_body_is_returned_as_its_own_error) {
    pieces_body body({"abc"}, make_error_code(errc::payload_too_large));
    keeping_sink sink;
    const auto got = forward(post_echo(std::nullopt), &body, sink);
    BOOST_REQUIRE(got.has_error());
    BOOST_TEST(got.error() == make_error_code(errc::payload_too_large));
    BOOST_TEST(sink.head.status == 0u);  // nothing was answered
}

BOOST_AUTO_TEST_SUITE_END()
