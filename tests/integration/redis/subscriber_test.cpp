// PUBLISH / SUBSCRIBE through a real redis-server: delivery of binary payloads, on_subscribed
// after the first subscription and again after a Redis restart, and a paused server
// noticed through the missing pong.
#include "fixture.hpp"

#include "gateway/redis/subscriber.hpp"

#include <string>
#include <utility>
#include <vector>

using namespace imagegate;
using namespace imagegate::redis;
using namespace imagegate::redis::test;

namespace {

/// What the handlers saw; they run on the io_context's one thread.
struct inbox {
    std::vector<std::pair<std::string, std::string>> messages;
    int subscribed = 0;
    event* got_message = nullptr;
    event* got_subscribed = nullptr;
};

subscriber_handlers handlers_for(inbox& box) {
    subscriber_handlers h;
    h.on_message = [&box](std::string_view channel, std::string_view payload) {
        box.messages.emplace_back(channel, payload);
        box.got_message->notify();
    };
    h.on_subscribed = [&box] {
        ++box.subscribed;
        box.got_subscribed->notify();
    };
    return h;
}

asio::awaitable<bool> publish_restart_publish(client& pub, subscriber& sub, inbox& box,
                                              redis_server& server) {
    BOOST_REQUIRE(co_await sub.wait_subscribed(clock::now() + 5s));
    BOOST_REQUIRE(co_await pub.wait_up(clock::now() + 5s));
    BOOST_TEST(box.subscribed == 1);

    const std::string payload("P acct img\r\n\0\xff", 15);
    auto receivers = co_await pub.exec(make_command("PUBLISH", "fleet:events", payload));
    BOOST_REQUIRE(receivers);
    BOOST_TEST(receivers->integer == 1);
    BOOST_REQUIRE(co_await box.got_message->wait(clock::now() + 5s));
    BOOST_REQUIRE(box.messages.size() == 1U);
    BOOST_TEST(box.messages[0].first == "fleet:events");
    BOOST_TEST(box.messages[0].second == payload);

    // Redis restarts: whatever was published meanwhile is lost, so the owner is told again.
    box.got_subscribed->reset();
    server.restart();
    BOOST_REQUIRE(co_await box.got_subscribed->wait(clock::now() + 10s));
    BOOST_TEST(box.subscribed == 2);
    BOOST_TEST(sub.is_subscribed());
    BOOST_TEST(sub.reconnects() >= 1U);
    BOOST_REQUIRE(co_await pub.wait_up(clock::now() + 5s));

    box.got_message->reset();
    auto again = co_await pub.exec(make_command("PUBLISH", "fleet:other", "X"));
    BOOST_REQUIRE(again);
    BOOST_TEST(again->integer == 1);
    BOOST_REQUIRE(co_await box.got_message->wait(clock::now() + 5s));
    BOOST_TEST(box.messages.back().first == "fleet:other");
    BOOST_TEST(box.messages.back().second == "X");
    // A channel nobody subscribed to reaches nobody.
    auto nobody = co_await pub.exec(make_command("PUBLISH", "elsewhere", "Y"));
    BOOST_REQUIRE(nobody);
    BOOST_TEST(nobody->integer == 0);
    BOOST_TEST(sub.messages() == 2U);
    BOOST_TEST(sub.subscriptions() == 2U);
    co_return true;
}

asio::awaitable<bool> paused_server_is_noticed(subscriber& sub, inbox& box, redis_server& server) {
    BOOST_REQUIRE(co_await sub.wait_subscribed(clock::now() + 5s));
    server.pause();
    // Health PING every 200 ms, pong expected within 200 ms: unsubscribed within ~0.5 s.
    const auto started = clock::now();
    while (sub.is_subscribed() && clock::now() < started + 3s) {
        asio::steady_timer tick(co_await asio::this_coro::executor);
        tick.expires_after(20ms);
        co_await tick.async_wait(use_nothrow);
    }
    BOOST_TEST(!sub.is_subscribed());
    BOOST_TEST(ms_since(started) < 200.0 + 200.0 + 300.0);
    box.got_subscribed->reset();
    server.resume();
    BOOST_REQUIRE(co_await box.got_subscribed->wait(clock::now() + 10s));
    BOOST_TEST(box.subscribed == 2);
    co_return true;
}

/// A server and a started subscriber whose handlers fill an inbox.
struct pubsub_fixture {
    explicit pubsub_fixture(std::vector<std::string> channels)
        : sub(ioc.get_executor(), options_for(server.port()), std::move(channels),
              handlers_for(box), nullptr) {
        sub.start();
    }
    redis_server server;
    asio::io_context ioc{1};
    event got_message{ioc.get_executor()};
    event got_subscribed{ioc.get_executor()};
    inbox box{{}, 0, &got_message, &got_subscribed};
    subscriber sub;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pubsub)

BOOST_AUTO_TEST_CASE(messages_and_on_subscribed_after_a_redis_restart) {
    pubsub_fixture f({"fleet:events", "fleet:other"});
    client pub(f.ioc.get_executor(), options_for(f.server.port()), nullptr);
    pub.start();
    BOOST_TEST(run(f.ioc, publish_restart_publish(pub, f.sub, f.box, f.server)));
}

BOOST_AUTO_TEST_CASE(a_paused_server_is_noticed_by_the_missing_pong) {
    pubsub_fixture f({"fleet:events"});
    BOOST_TEST(run(f.ioc, paused_server_is_noticed(f.sub, f.box, f.server)));
}

BOOST_AUTO_TEST_CASE(no_channel_is_a_start_up_error) {
    asio::io_context ioc(1);
    BOOST_CHECK_THROW(subscriber(ioc.get_executor(), options_for(6379), {}, {}, nullptr),
                      std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
