// The upstream client against the in-process emulator over verified TLS (its test CA):
// success, keep-alive reuse, TLS failures, deadlines, limits, framing faults, the stale-
// connection retry, pool limits, idle expiry and shutdown; one pool per worker sharing the
// connection limit and the TLS sessions. No fixed ports, no sleeps.
#define BOOST_TEST_MODULE upstream_test
#include "gateway/core/workers.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/upstream/tls.hpp"
#include "tests/emulator/emulator.hpp"
#include "tests/emulator/pki.hpp"
#include "tests/support/death.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>
#include <vector>

namespace up = imagegate::upstream;
namespace asio = boost::asio;
namespace emu = imagegate::testing;
using imagegate::errc;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view account = "023e105f4ecef8ad9ca31a8372d0c353";

/// The clients run on two workers (the production model: one io_context and one thread
/// each, a pool per worker), the emulator on a thread of its own.
struct fixture {
    imagegate::workers io{2};
    imagegate::workers emulator_io{1};
    std::unique_ptr<emu::emulator> server;
    std::shared_ptr<asio::ssl::context> tls;
    std::shared_ptr<spdlog::logger> log =
        spdlog::stderr_color_mt("upstream-test-" + std::to_string(counter()++));

    fixture() {
        emu::emulator_options o;
        o.any_image_exists = true;
        o.single_threaded = true;
        server = std::make_unique<emu::emulator>(emulator_io.executor(0), std::move(o));
        server->start();
        tls = up::make_tls_context({.ca_file = {}, .ca_pem = server->ca_pem()}).value();
        log->set_level(spdlog::level::debug);
        emulator_io.start();
        io.start();
    }

    ~fixture() {
        server->stop();
        io.release();
        emulator_io.release();
        // Bounded: everything should wind down at once; a stuck task fails the test run
        // instead of hanging it.
        const auto until = std::chrono::steady_clock::now() + 10s;
        BOOST_CHECK_MESSAGE(io.wait_until(until) && emulator_io.wait_until(until),
                            "the workers still had work 10 s after the test");
        io.stop();
        emulator_io.stop();
        io.join();
        emulator_io.join();
        server.reset();
        spdlog::drop(log->name());
    }

    static int& counter() {
        static int n = 0;
        return n;
    }

    up::client_options options() const {
        up::client_options o;
        o.host = "127.0.0.1";
        o.port = server->port();
        o.tls = true;
        o.base_path = "/client/v4";
        o.token = server->token();
        o.pool.max_connections = 4;
        o.pool.connect_timeout = 5s;
        o.pool.idle_timeout = 30s;
        o.pool.acquire_timeout = 5s;
        return o;
    }

    std::unique_ptr<up::client> make_client(up::client_options o) {
        return std::make_unique<up::client>(io.executors(), std::move(o), tls, log);
    }

    static std::string target(std::string_view id) {
        return "/accounts/" + std::string(account) + "/images/v1/" + std::string(id);
    }

    /// Starts a fetch on worker `worker`; the future is ready when it completes.
    std::future<boost::system::result<up::response>> start_fetch(
        up::client& c, std::string id, std::chrono::steady_clock::duration budget = 10s,
        std::size_t worker = 0) {
        return asio::co_spawn(io.executor(worker),
                              c.fetch(target(id), std::chrono::steady_clock::now() + budget),
                              asio::use_future);
    }

    boost::system::result<up::response> fetch(up::client& c, std::string id,
                                              std::chrono::steady_clock::duration budget = 10s,
                                              std::size_t worker = 0) {
        auto f = start_fetch(c, std::move(id), budget, worker);
        BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
        return f.get();
    }

    /// Bounded polling for state owned by other threads (the emulator, the pools' workers).
    static bool eventually(const std::function<bool()>& pred,
                           std::chrono::steady_clock::duration limit = 10s) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (!pred()) {
            if (std::chrono::steady_clock::now() > until) {
                return false;
            }
            std::this_thread::sleep_for(2ms);
        }
        return true;
    }
};

void require_ok(const boost::system::result<up::response>& r, unsigned status = 200) {
    BOOST_REQUIRE_MESSAGE(r.has_value(), "fetch failed: " << (r ? "" : r.error().message()));
    BOOST_TEST(r->status == status);
    BOOST_TEST(r->body.capacity() >= r->body.size() + up::body_padding);
}

void require_error(const boost::system::result<up::response>& r, errc expected) {
    BOOST_REQUIRE_MESSAGE(r.has_error(), "fetch unexpectedly answered " << (r ? r->status : 0));
    BOOST_TEST(r.error() == make_error_code(expected), r.error().message());
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(upstream, fixture)

BOOST_AUTO_TEST_CASE(fetch_returns_the_record_and_reuses_the_connection) {
    auto c = make_client(options());
    for (int i = 0; i < 3; ++i) {
        const auto r = fetch(*c, "img-" + std::to_string(i));
        require_ok(r);
        BOOST_TEST(r->body.find("\"success\":true") != std::string::npos);
        BOOST_TEST(r->content_type.find("application/json") == 0u);
        BOOST_TEST(!r->ratelimit.empty());
        BOOST_TEST(r->reused_connection == (i > 0));
    }
    BOOST_TEST(server->connections_accepted() == 1u);
    BOOST_TEST(server->snapshot().requests == 3u);
    BOOST_TEST(c->stats().connects.load() == 1u);
    BOOST_TEST(c->stats().reuses.load() == 2u);
    BOOST_TEST(c->stats().responses_200.load() == 3u);
    BOOST_TEST(c->stats().latency.count() == 3u);
    BOOST_TEST(eventually([&] { return c->stats().idle.load() == 1u; }));
}

BOOST_AUTO_TEST_CASE(facts_say_how_each_answer_came) {
    auto c = make_client(options());
    const auto first = fetch(*c, "f-1");
    require_ok(first);
    BOOST_TEST(first->facts == (up::exchange_facts{.fresh_connection = true,
                                                   .framed = true,
                                                   .trailing_bytes = false,
                                                   .interim_responses = 0}));
    BOOST_TEST(first->facts.certain());
    const auto second = fetch(*c, "f-2");
    require_ok(second);
    BOOST_TEST(!second->facts.fresh_connection);
    BOOST_TEST(second->facts.clean());
    BOOST_TEST(!second->facts.certain());
    server->add_fault({.kind = emu::fault_kind::chunked, .image_id = "f-3", .times = 1});
    const auto chunked = fetch(*c, "f-3");
    require_ok(chunked);
    BOOST_TEST(chunked->facts.framed);
    BOOST_TEST(chunked->facts.clean());
    // A caller that needs a certain answer gets a new connection, though one is idle.
    BOOST_TEST(eventually([&] { return c->stats().idle.load() == 1u; }));
    auto f = asio::co_spawn(io.executor(0),
                            c->fetch(target("f-4"), std::chrono::steady_clock::now() + 10s, nullptr,
                                     up::connection_choice::fresh),
                            asio::use_future);
    BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
    const auto fresh = f.get();
    require_ok(fresh);
    BOOST_TEST(fresh->facts.certain());
    BOOST_TEST(server->connections_accepted() == 2u);
}

BOOST_AUTO_TEST_CASE(non_2xx_status_is_a_value) {
    auto o = options();
    o.token = "wrong-token";
    auto c = make_client(o);
    const auto r = fetch(*c, "img-1");
    BOOST_REQUIRE(r.has_value());
    BOOST_TEST(r->status >= 400u);
    BOOST_TEST(r->status < 500u);
    BOOST_TEST(c->stats().responses_4xx.load() == 1u);
}

BOOST_AUTO_TEST_CASE(server_name_other_than_the_address_is_verified) {
    auto o = options();
    o.server_name = "localhost";  // SAN DNS:localhost, sent as SNI
    auto c = make_client(o);
    require_ok(fetch(*c, "img-1"));
}

BOOST_AUTO_TEST_CASE(untrusted_ca_fails_tls_and_sends_nothing) {
    const auto other = emu::make_test_pki();
    auto ctx = up::make_tls_context({.ca_file = {}, .ca_pem = other.ca_cert_pem}).value();
    up::client c(io.executors(), options(), ctx, log);
    require_error(fetch(c, "img-1"), errc::upstream_tls_failed);
    BOOST_TEST(server->snapshot().requests == 0u);
    BOOST_TEST(c.stats().tls_failures.load() == 1u);
}

BOOST_AUTO_TEST_CASE(host_name_mismatch_fails_tls) {
    auto o = options();
    o.server_name = "api.cloudflare.com";  // chain is trusted, but not for this name
    auto c = make_client(o);
    require_error(fetch(*c, "img-1"), errc::upstream_tls_failed);
    BOOST_TEST(server->snapshot().requests == 0u);
}

BOOST_AUTO_TEST_CASE(connect_refused_is_connect_failed) {
    auto o = options();
    {
        // A port that was free a moment ago: bind, read it back, close.
        asio::io_context binder;
        asio::ip::tcp::acceptor a(binder, {asio::ip::make_address("127.0.0.1"), 0});
        o.port = a.local_endpoint().port();
    }
    auto c = make_client(o);
    require_error(fetch(*c, "img-1"), errc::upstream_connect_failed);
    BOOST_TEST(c->stats().connect_failures.load() == 1u);
}

BOOST_AUTO_TEST_CASE(hang_past_the_deadline_times_out_and_is_not_reused) {
    auto c = make_client(options());
    require_ok(fetch(*c, "warm"));
    BOOST_TEST(server->connections_accepted() == 1u);
    server->add_fault({.kind = emu::fault_kind::hang, .image_id = "slow", .times = 1});
    const auto started = std::chrono::steady_clock::now();
    require_error(fetch(*c, "slow", 300ms), errc::upstream_timeout);
    BOOST_TEST((std::chrono::steady_clock::now() - started) < 5s);
    BOOST_TEST(c->stats().timeouts.load() == 1u);
    // The timed-out connection was closed; the next fetch needs a new one.
    const auto r = fetch(*c, "after");
    require_ok(r);
    BOOST_TEST(r->facts.fresh_connection);
    BOOST_TEST(server->connections_accepted() == 2u);
}

BOOST_AUTO_TEST_CASE(oversized_body_is_too_large) {
    auto o = options();
    o.max_body_bytes = 4096;
    auto c = make_client(o);
    server->add_fault(
        {.kind = emu::fault_kind::oversized, .image_id = "big", .times = 1, .size = 64 * 1024});
    require_error(fetch(*c, "big"), errc::upstream_too_large);
    BOOST_TEST(c->stats().too_large.load() == 1u);
    require_ok(fetch(*c, "small"));
}

BOOST_AUTO_TEST_CASE(chunked_body_is_read_whole) {
    auto c = make_client(options());
    const auto plain = fetch(*c, "same");
    require_ok(plain);
    server->add_fault({.kind = emu::fault_kind::chunked, .image_id = "same", .times = 1});
    const auto chunked = fetch(*c, "same");
    require_ok(chunked);
    BOOST_TEST(chunked->body == plain->body);
    BOOST_TEST(chunked->reused_connection);
}

BOOST_AUTO_TEST_CASE(truncated_body_is_a_protocol_error) {
    auto c = make_client(options());
    server->add_fault({.kind = emu::fault_kind::truncated, .image_id = "cut", .times = 1});
    require_error(fetch(*c, "cut"), errc::upstream_protocol_error);
    BOOST_TEST(c->stats().protocol_errors.load() == 1u);
    BOOST_TEST(server->requests_for("cut") == 1u);
}

// The client makes exactly one attempt and reports what the caller's retry rule needs
// (shield/retry.hpp: one retry layer, in the image fetch): a reset on a reused connection
// before any response byte is the stale-connection case, retried there on a fresh one.
BOOST_AUTO_TEST_CASE(reset_on_a_reused_connection_is_reported_not_retried) {
    auto c = make_client(options());
    require_ok(fetch(*c, "warm"));
    server->add_fault({.kind = emu::fault_kind::reset, .image_id = "flaky", .times = 1});
    up::attempt_facts facts;
    auto f = asio::co_spawn(io.executor(0),
                            c->fetch(target("flaky"), std::chrono::steady_clock::now() + 10s,
                                     nullptr, up::connection_choice::pooled, &facts),
                            asio::use_future);
    BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
    require_error(f.get(), errc::upstream_protocol_error);
    BOOST_TEST(facts.reused_connection);
    BOOST_TEST(!facts.response_started);
    BOOST_TEST(server->requests_for("flaky") == 1u);
    // The retry the caller makes asks for a connection that was never used.
    auto again = asio::co_spawn(io.executor(0),
                                c->fetch(target("flaky"), std::chrono::steady_clock::now() + 10s,
                                         nullptr, up::connection_choice::fresh),
                                asio::use_future);
    BOOST_REQUIRE(again.wait_for(30s) == std::future_status::ready);
    const auto r = again.get();
    require_ok(r);
    BOOST_TEST(r->facts.fresh_connection);
    BOOST_TEST(server->connections_accepted() == 2u);
}

BOOST_AUTO_TEST_CASE(reset_on_a_fresh_connection_is_reported) {
    auto c = make_client(options());
    server->add_fault({.kind = emu::fault_kind::reset, .image_id = "flaky", .times = 1});
    up::attempt_facts facts;
    auto f = asio::co_spawn(io.executor(0),
                            c->fetch(target("flaky"), std::chrono::steady_clock::now() + 10s,
                                     nullptr, up::connection_choice::pooled, &facts),
                            asio::use_future);
    BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
    require_error(f.get(), errc::upstream_protocol_error);
    BOOST_TEST(!facts.reused_connection);
    BOOST_TEST(server->requests_for("flaky") == 1u);
}

BOOST_AUTO_TEST_CASE(connection_close_answer_is_not_reused) {
    auto c = make_client(options());
    server->add_fault({.kind = emu::fault_kind::close, .image_id = "bye", .times = 1});
    const auto bye = fetch(*c, "bye");
    require_ok(bye);
    // The close_notify behind the answer is the end of the connection, not trailing bytes.
    BOOST_TEST(bye->facts.clean());
    const auto r = fetch(*c, "next");
    require_ok(r);
    BOOST_TEST(r->facts.fresh_connection);
    BOOST_TEST(server->connections_accepted() == 2u);
}

BOOST_AUTO_TEST_CASE(max_connections_is_respected_under_concurrency) {
    auto o = options();
    o.pool.max_connections = 2;
    auto c = make_client(o);
    server->add_fault(
        {.kind = emu::fault_kind::delay, .image_id = {}, .times = std::nullopt, .delay = 50ms});
    std::vector<std::future<boost::system::result<up::response>>> futures;
    for (int i = 0; i < 8; ++i) {
        futures.push_back(start_fetch(*c, "c-" + std::to_string(i)));
    }
    for (auto& f : futures) {
        BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
        require_ok(f.get());
    }
    BOOST_TEST(server->connections_accepted() <= 2u);
    BOOST_TEST(c->stats().acquire_waits.load() >= 2u);
    BOOST_TEST(c->stats().acquire_timeouts.load() == 0u);
}

BOOST_AUTO_TEST_CASE(acquire_timeout_is_pool_exhausted) {
    auto o = options();
    o.pool.max_connections = 1;
    o.pool.acquire_timeout = 200ms;
    auto c = make_client(o);
    server->add_fault(
        {.kind = emu::fault_kind::delay, .image_id = "busy", .times = 1, .delay = 2s});
    auto busy = start_fetch(*c, "busy");
    BOOST_REQUIRE(eventually([&] { return server->requests_for("busy") == 1u; }));
    require_error(fetch(*c, "starved"), errc::pool_exhausted);
    BOOST_TEST(c->stats().acquire_timeouts.load() == 1u);
    BOOST_REQUIRE(busy.wait_for(30s) == std::future_status::ready);
    require_ok(busy.get());
    // The released connection serves the next caller.
    const auto r = fetch(*c, "later");
    require_ok(r);
    BOOST_TEST(r->reused_connection);
}

BOOST_AUTO_TEST_CASE(idle_connections_are_closed_after_idle_timeout) {
    auto o = options();
    o.pool.idle_timeout = 100ms;
    auto c = make_client(o);
    require_ok(fetch(*c, "one"));
    BOOST_TEST(eventually([&] { return c->stats().idle_closes.load() == 1u; }));
    BOOST_TEST(c->stats().idle.load() == 0u);
    const auto r = fetch(*c, "two");
    require_ok(r);
    BOOST_TEST(r->facts.fresh_connection);
    BOOST_TEST(server->connections_accepted() == 2u);
}

BOOST_AUTO_TEST_CASE(max_requests_per_connection_retires_it) {
    auto o = options();
    o.pool.max_requests_per_connection = 2;
    auto c = make_client(o);
    for (int i = 0; i < 4; ++i) {
        require_ok(fetch(*c, "r-" + std::to_string(i)));
    }
    BOOST_TEST(server->connections_accepted() == 2u);
    BOOST_TEST(eventually([&] { return c->stats().retired.load() == 2u; }));
}

// Every connection after the first offers the session of an earlier one; the emulator
// (OpenSSL, session tickets on by default) resumes it: no full handshake on either side.
BOOST_AUTO_TEST_CASE(new_connections_resume_the_tls_session) {
    auto o = options();
    o.pool.max_requests_per_connection = 1;
    auto c = make_client(o);
    for (int i = 0; i < 3; ++i) {
        require_ok(fetch(*c, "s-" + std::to_string(i)));
    }
    BOOST_TEST(server->connections_accepted() == 3u);
    BOOST_TEST(c->stats().connects.load() == 3u);
    BOOST_TEST(c->stats().tls_resumptions.load() == 2u);
    std::string text;
    c->stats().render(text);
    BOOST_TEST(text.find("imagegate_upstream_tls_resumptions_total 2") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(shutdown_wakes_waiters_and_aborts_exchanges) {
    auto o = options();
    o.pool.max_connections = 1;
    o.pool.acquire_timeout = 20s;
    auto c = make_client(o);
    server->add_fault({.kind = emu::fault_kind::hang, .image_id = "stuck", .times = 1});
    auto stuck = start_fetch(*c, "stuck", 20s);
    BOOST_REQUIRE(eventually([&] { return server->requests_for("stuck") == 1u; }));
    auto waiting = start_fetch(*c, "waiting", 20s);
    BOOST_REQUIRE(eventually([&] { return c->stats().acquire_waits.load() == 2u; }));
    const auto started = std::chrono::steady_clock::now();
    c->shutdown();
    BOOST_REQUIRE(waiting.wait_for(5s) == std::future_status::ready);
    require_error(waiting.get(), errc::shutting_down);
    BOOST_REQUIRE(stuck.wait_for(5s) == std::future_status::ready);
    require_error(stuck.get(), errc::shutting_down);
    BOOST_TEST((std::chrono::steady_clock::now() - started) < 5s);
    require_error(fetch(*c, "after"), errc::shutting_down);
}

BOOST_AUTO_TEST_CASE(plaintext_requires_explicit_opt_in) {
    auto o = options();
    o.tls = false;
    BOOST_CHECK_THROW(make_client(o), std::invalid_argument);
}

// A fetch runs on its caller's worker with that worker's pool and connections: no hop to
// another context. The pools share the TLS session cache: the second worker's first
// connection resumes the session of the first worker's.
BOOST_AUTO_TEST_CASE(fetches_run_on_the_callers_worker_with_its_own_pool) {
    auto c = make_client(options());
    require_ok(fetch(*c, "w0-a", 10s, 0));
    const auto on_1 = fetch(*c, "w1-a", 10s, 1);
    require_ok(on_1);
    BOOST_TEST(!on_1->reused_connection);  // worker 1's pool had none of worker 0's
    const auto again_0 = fetch(*c, "w0-b", 10s, 0);
    require_ok(again_0);
    BOOST_TEST(again_0->reused_connection);
    BOOST_TEST(c->stats().exchanges_by_worker.size() == 2u);
    BOOST_TEST(c->stats().exchanges_by_worker[0].load() == 2u);
    BOOST_TEST(c->stats().exchanges_by_worker[1].load() == 1u);
    BOOST_TEST(server->connections_accepted() == 2u);
    BOOST_TEST(c->stats().tls_resumptions.load() == 1u);
    BOOST_TEST(eventually([&] { return c->stats().idle.load() == 2u; }));
    std::string text;
    c->stats().render(text);
    BOOST_TEST(text.find("imagegate_upstream_exchanges_total{worker=\"1\"} 1") !=
               std::string::npos);
}

// max_connections bounds the origin, not each pool: fetches on both workers at once never
// hold more than 2 connections together, and all of them are served.
BOOST_AUTO_TEST_CASE(max_connections_is_shared_by_the_workers_pools) {
    auto o = options();
    o.pool.max_connections = 2;
    auto c = make_client(o);
    server->add_fault(
        {.kind = emu::fault_kind::delay, .image_id = {}, .times = std::nullopt, .delay = 30ms});
    std::atomic<bool> done{false};
    std::atomic<std::size_t> most{0};
    std::thread sampler([&] {
        while (!done.load()) {
            most.store(std::max(most.load(), c->open_connections()));
            std::this_thread::yield();
        }
    });
    std::vector<std::future<boost::system::result<up::response>>> futures;
    for (int i = 0; i < 12; ++i) {
        futures.push_back(start_fetch(*c, "s-" + std::to_string(i), 10s, i % 2));
    }
    for (auto& f : futures) {
        BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
        require_ok(f.get());
    }
    done.store(true);
    sampler.join();
    BOOST_TEST(most.load() <= 2u);
    BOOST_TEST(c->open_connections() <= 2u);
    BOOST_TEST(c->stats().exchanges_by_worker[0].load() == 6u);
    BOOST_TEST(c->stats().exchanges_by_worker[1].load() == 6u);
    BOOST_TEST(c->stats().acquire_timeouts.load() == 0u);
}

// Worker 0 holds every connection the limit allows, idle; a fetch on worker 1 does not wait
// for them to age out (idle_timeout 30 s) or time out (acquire_timeout 5 s): worker 0 hands
// one over (closes it, and worker 1 opens its own).
BOOST_AUTO_TEST_CASE(an_idle_connection_of_one_worker_makes_room_for_another) {
    auto o = options();
    o.pool.max_connections = 2;
    auto c = make_client(o);
    server->add_fault({.kind = emu::fault_kind::delay, .image_id = {}, .times = 2, .delay = 200ms});
    auto first = start_fetch(*c, "held-1", 10s, 0);
    auto second = start_fetch(*c, "held-2", 10s, 0);
    require_ok(first.get());
    require_ok(second.get());
    BOOST_REQUIRE(eventually([&] { return c->stats().idle.load() == 2u; }));
    BOOST_TEST(c->open_connections() == 2u);
    const auto started = std::chrono::steady_clock::now();
    require_ok(fetch(*c, "elsewhere", 10s, 1));
    BOOST_TEST((std::chrono::steady_clock::now() - started) < 2s);
    BOOST_TEST(c->stats().exchanges_by_worker[1].load() == 1u);
    BOOST_TEST(c->open_connections() <= 2u);
    BOOST_TEST(c->stats().acquire_timeouts.load() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

// A fetch started anywhere but on one of the client's workers would touch a pool from the
// wrong thread: it aborts, in every build mode, before any I/O.
BOOST_AUTO_TEST_CASE(a_fetch_off_the_clients_workers_aborts) {
    const auto end = emu::run_in_child([] {
        const imagegate::workers io(1);  // never started: no thread in the child
        up::client_options o;
        o.host = "127.0.0.1";
        o.port = 9;
        o.tls = false;
        o.allow_plaintext = true;
        up::client c(io.executors(), o, nullptr);
        asio::io_context other;
        auto f = asio::co_spawn(other, c.fetch("/x", std::chrono::steady_clock::now() + 1s),
                                asio::use_future);
        other.run();
    });
    BOOST_TEST(end.aborted);
    BOOST_TEST(end.stderr_text.find("internal check failed: an upstream fetch runs on one of "
                                    "its client's workers") != std::string::npos,
               end.stderr_text);
}
