// A slow, stalled, dead or restarted Redis: every call ends by its deadline (measured), a
// stalled pipeline is broken and reconnected, calls fail at once while the client is down,
// and the client recovers by itself. Also the caller's own deadline and cancellation, the
// pending cap and stop().
#include "fixture.hpp"

#include <boost/asio/post.hpp>

using namespace imagegate;
using namespace imagegate::redis;
using namespace imagegate::redis::test;

namespace {

/// Slack for a loaded 2-core machine: a deadline fires within this after it passes.
constexpr double slack_ms = 150.0;

asio::awaitable<bool> paused_then_resumed(client& c, redis_server& server) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    BOOST_REQUIRE(co_await c.exec(make_command("SET", "k", "v")));

    server.pause();
    auto started = clock::now();
    auto stalled = co_await c.exec(make_command("GET", "k"));
    const double took = ms_since(started);
    BOOST_REQUIRE(!stalled);
    BOOST_TEST(stalled.error() == error::timeout);
    BOOST_TEST(took >= 195.0);
    BOOST_TEST(took < 200.0 + slack_ms, "took " << took << " ms for op_timeout 200 ms");
    BOOST_TEST_MESSAGE("GET on a paused server: timeout after " << took << " ms (op_timeout 200)");

    // The watchdog broke the stalled connection; reconnect attempts reach the kernel's
    // backlog and then time out on PING. Meanwhile every call fails at once.
    for (int i = 0; i < 5; ++i) {
        started = clock::now();
        auto down = co_await c.exec(make_command("GET", "k"));
        BOOST_REQUIRE(!down);
        BOOST_TEST(down.error() == error::not_connected);
        BOOST_TEST(ms_since(started) < 20.0);
        asio::steady_timer pause(co_await asio::this_coro::executor);
        pause.expires_after(50ms);
        co_await pause.async_wait(use_nothrow);
    }
    BOOST_TEST(!c.is_up());

    server.resume();
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    auto back = co_await c.exec(make_command("GET", "k"));
    BOOST_REQUIRE(back);
    BOOST_TEST(back->text == "v");
    BOOST_TEST(c.reconnects() >= 1U);
    BOOST_TEST(c.stats().timeouts.load() >= 1U);
    BOOST_TEST(c.stats().down_refusals.load() >= 5U);
    BOOST_TEST(c.stats().reconnects.load() == c.reconnects());
    BOOST_TEST(c.stats().connect_failures.load() >= 1U);  // timed-out PINGs while paused
    BOOST_TEST(c.stats().connections_up.load() == 1U);
    co_return true;
}

asio::awaitable<bool> killed_then_restarted(client& c, redis_server& server) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    BOOST_REQUIRE(co_await c.exec(make_command("SET", "k", "v")));

    server.kill();
    // The first call may still go out on the dying connection (the reset not read yet);
    // either way it fails fast, long before op_timeout.
    auto started = clock::now();
    auto first = co_await c.exec(make_command("GET", "k"));
    BOOST_REQUIRE(!first);
    BOOST_TEST((first.error() == error::not_connected || first.error() == error::connection_lost),
               first.error().message());
    BOOST_TEST(ms_since(started) < 100.0);
    for (int i = 0; i < 5; ++i) {
        asio::steady_timer pause(co_await asio::this_coro::executor);
        pause.expires_after(30ms);
        co_await pause.async_wait(use_nothrow);
        started = clock::now();
        auto down = co_await c.exec(make_command("GET", "k"));
        BOOST_REQUIRE(!down);
        BOOST_TEST(down.error() == error::not_connected);
        BOOST_TEST(ms_since(started) < 20.0);
    }
    server.restart();
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    auto back = co_await c.exec(make_command("SET", "k", "w"));
    BOOST_REQUIRE(back);
    BOOST_TEST(back->is_status("OK"));
    BOOST_TEST(c.reconnects() >= 1U);
    co_return true;
}

/// A command that occupies the connection server-side for `seconds` (a blocking pop on an
/// empty list): a slow head of line without pausing the whole server.
command slow(double seconds) {
    return make_command("BLPOP", "empty-list", std::to_string(seconds));
}

asio::awaitable<bool> own_deadline_and_fifo(client& c) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    BOOST_REQUIRE(co_await c.exec(make_command("SET", "k", "v")));
    // The caller's deadline (50 ms) is earlier than op_timeout (1 s): it wins, and the late
    // BLPOP reply is discarded, not handed to the next caller.
    auto started = clock::now();
    auto gave_up = co_await c.exec(slow(0.3), clock::now() + 50ms);
    BOOST_REQUIRE(!gave_up);
    BOOST_TEST(gave_up.error() == error::timeout);
    BOOST_TEST(ms_since(started) >= 45.0);
    BOOST_TEST(ms_since(started) < 50.0 + slack_ms);
    auto next = co_await c.exec(make_command("GET", "k"));
    BOOST_REQUIRE(next);
    BOOST_TEST(next->text == "v");
    BOOST_TEST(c.is_up());  // a slow reply within op_timeout does not break the connection
    co_return true;
}

asio::awaitable<bool> stalled_pipeline_breaks(client& c) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    // op_timeout is 200 ms; the head of line takes 1 s: the connection is declared broken.
    const auto ex = co_await asio::this_coro::executor;
    auto started = clock::now();
    auto head = co_await c.exec(slow(1.0));
    BOOST_REQUIRE(!head);
    BOOST_TEST((head.error() == error::timeout || head.error() == error::pipeline_stalled));
    BOOST_TEST(ms_since(started) < 200.0 + slack_ms);
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    BOOST_TEST(c.reconnects() >= 1U);
    auto after = co_await c.exec(command("PING"));
    BOOST_REQUIRE(after);
    BOOST_TEST(after->is_status("PONG"));
    (void)ex;
    co_return true;
}

asio::awaitable<bool> cancelled_by_caller(client& c) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    BOOST_REQUIRE(co_await c.exec(make_command("SET", "k", "v")));
    asio::steady_timer other(co_await asio::this_coro::executor);
    other.expires_after(30ms);
    const auto started = clock::now();
    auto raced = co_await (c.exec(slow(0.2)) || other.async_wait(use_nothrow));
    BOOST_TEST(raced.index() == 1U);  // the timer won; exec was cancelled through its slot
    BOOST_TEST(ms_since(started) < 30.0 + slack_ms);
    auto next = co_await c.exec(make_command("GET", "k"));
    BOOST_REQUIRE(next);
    BOOST_TEST(next->text == "v");  // the BLPOP reply went nowhere
    co_return true;
}

asio::awaitable<boost::system::result<reply>> exec_into(client& c, command cmd) {
    auto r = co_await c.exec(std::move(cmd));
    co_return r;
}

struct store_result {
    std::optional<boost::system::result<reply>>* into;
    void operator()(const std::exception_ptr&, boost::system::result<reply> r) const {
        into->emplace(std::move(r));
    }
};

asio::awaitable<bool> pending_cap_and_stop(client& c) {
    BOOST_REQUIRE(co_await c.wait_up(clock::now() + 5s));
    const auto ex = co_await asio::this_coro::executor;
    // max_pending is 2: two slow commands fill the pipeline, a third is refused at once.
    std::optional<boost::system::result<reply>> first;
    std::optional<boost::system::result<reply>> second;
    asio::co_spawn(ex, exec_into(c, slow(0.5)), store_result{&first});
    asio::co_spawn(ex, exec_into(c, slow(0.5)), store_result{&second});
    co_await asio::post(ex, use_awaitable);  // let both queue their command
    auto refused = co_await c.exec(command("PING"));
    BOOST_REQUIRE(!refused);
    BOOST_TEST(refused.error() == error::too_many_pending);
    // A deadline already past is not sent at all; a command over the write buffer cap is
    // refused whole.
    auto late = co_await c.exec(command("PING"), clock::now() - 1ms);
    BOOST_TEST(late.error() == error::timeout);
    const std::string huge(2 * 1024 * 1024, 'h');
    auto too_large = co_await c.exec(make_command("SET", "k", huge));
    BOOST_TEST(too_large.error() == error::command_too_large);

    // stop() fails what is waiting with shutting_down, and every later call too.
    c.stop();
    for (int i = 0; i < 100 && !(first && second); ++i) {
        co_await asio::post(ex, use_awaitable);
    }
    BOOST_REQUIRE(first.has_value());
    BOOST_REQUIRE(second.has_value());
    BOOST_TEST(first->error() == error::shutting_down);
    BOOST_TEST(second->error() == error::shutting_down);
    auto after = co_await c.exec(command("PING"));
    BOOST_TEST(after.error() == error::shutting_down);
    BOOST_TEST(!c.is_up());
    co_return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(client_failures)

BOOST_AUTO_TEST_CASE(paused_server_fails_by_the_deadline_then_recovers) {
    // No health PING: the measured call, not the PING, meets the stall.
    client_fixture f([](connection_options& o) { o.health_check_interval = 10s; });
    BOOST_TEST(run(f.ioc, paused_then_resumed(f.c, f.server)));
}

BOOST_AUTO_TEST_CASE(killed_server_fails_fast_and_reconnects_after_restart) {
    client_fixture f;
    BOOST_TEST(run(f.ioc, killed_then_restarted(f.c, f.server)));
}

BOOST_AUTO_TEST_CASE(callers_deadline_wins_and_late_reply_is_discarded) {
    client_fixture f([](connection_options& o) { o.op_timeout = 1s; });
    BOOST_TEST(run(f.ioc, own_deadline_and_fifo(f.c)));
}

BOOST_AUTO_TEST_CASE(head_of_line_overdue_breaks_the_connection) {
    client_fixture f;
    BOOST_TEST(run(f.ioc, stalled_pipeline_breaks(f.c)));
}

BOOST_AUTO_TEST_CASE(cancellation_through_the_callers_slot) {
    client_fixture f([](connection_options& o) { o.op_timeout = 1s; });
    BOOST_TEST(run(f.ioc, cancelled_by_caller(f.c)));
}

BOOST_AUTO_TEST_CASE(a_full_pipeline_refuses_and_stop_fails_waiters) {
    client_fixture f([](connection_options& o) {
        o.op_timeout = 2s;
        o.max_pending = 2;
        o.max_write_buffer_bytes = 1024 * 1024;
        o.health_check_interval = 10s;  // no health PING in the pipeline meanwhile
    });
    BOOST_TEST(run(f.ioc, pending_cap_and_stop(f.c)));
}

BOOST_AUTO_TEST_SUITE_END()
