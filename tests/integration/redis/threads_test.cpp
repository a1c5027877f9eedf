// The threading model: one io_context per I/O thread, one client per io_context, calls
// without executor hops; two threads hammer one key through their own clients while a third
// reads the shared stats and the clients' state (TSan runs this).
#include "fixture.hpp"

#include <boost/asio/co_spawn.hpp>

#include <atomic>
#include <thread>

using namespace imagegate;
using namespace imagegate::redis;
using namespace imagegate::redis::test;

namespace {

asio::awaitable<int> increment(client& c, int times) {
    const bool up = co_await c.wait_up(clock::now() + 10s);
    if (!up) {
        co_return 0;
    }
    int done = 0;
    for (int i = 0; i < times; ++i) {
        auto r = co_await c.exec(make_command("INCR", "shared-counter"), clock::now() + 5s);
        done += (r && r->kind == reply_kind::integer) ? 1 : 0;
    }
    co_return done;
}

asio::awaitable<std::int64_t> read_counter(client& c) {
    const bool up = co_await c.wait_up(clock::now() + 10s);
    if (!up) {
        co_return -1;
    }
    auto r = co_await c.exec(make_command("GET", "shared-counter"));
    co_return r && r->kind == reply_kind::string ? std::stoll(r->text) : -1;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(threads)

BOOST_AUTO_TEST_CASE(one_client_per_io_context) {
    redis_server server;
    auto stats = std::make_shared<client_stats>();
    auto o = options_for(server.port());
    o.op_timeout = 2s;
    asio::io_context first(1);
    asio::io_context second(1);
    client a(first.get_executor(), o, nullptr, stats);
    client b(second.get_executor(), o, nullptr, stats);
    a.start();
    b.start();
    constexpr int per_thread = 500;
    std::atomic<bool> running{true};
    int done_a = 0;
    int done_b = 0;
    std::thread ta([&] { done_a = run(first, increment(a, per_thread)); });
    std::thread tb([&] { done_b = run(second, increment(b, per_thread)); });
    // Another thread may read the state and the shared counters at any time.
    std::thread reader([&] {
        std::string text;
        while (running.load()) {
            text.clear();
            stats->render(text);
            (void)a.is_up();
            (void)b.reconnects();
            std::this_thread::yield();
        }
    });
    ta.join();
    tb.join();
    running = false;
    reader.join();
    BOOST_TEST(done_a == per_thread);
    BOOST_TEST(done_b == per_thread);
    BOOST_TEST(run(first, read_counter(a)) == 2 * per_thread);
    BOOST_TEST(stats->ops.load() == 2U * per_thread + 1U);
    BOOST_TEST(stats->latency.count() == 2U * per_thread + 1U);
    BOOST_TEST(stats->errors.load() == 0U);
    BOOST_TEST(stats->connections_up.load() == 2U);
    a.stop();
    b.stop();
    first.restart();
    first.poll();
    second.restart();
    second.poll();
    BOOST_TEST(stats->connections_up.load() == 0U);
}

BOOST_AUTO_TEST_SUITE_END()
