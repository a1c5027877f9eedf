// Shared pieces of the Redis integration tests: run a coroutine to completion on an
// io_context with a hard limit, client options pointing at a test redis-server, a logger
// whose output the test can read, and a one-shot event to await.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/redis/client.hpp"
#include "tests/support/redis_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/test/unit_test.hpp>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace imagegate::redis::test {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using testing::redis_server;
using testing::redis_server_options;

/// Runs `task` on `ioc` (in this thread) until it completes; fails the test after `limit`.
/// Background work (reconnect loops) may keep running afterwards.
template <class T>
T run(asio::io_context& ioc, asio::awaitable<T> task, std::chrono::seconds limit = 30s) {
    std::optional<T> out;
    std::exception_ptr failure;
    bool done = false;
    asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr ep, T value) {
        failure = ep;
        out.emplace(std::move(value));
        done = true;
    });
    const auto deadline = clock::now() + limit;
    ioc.restart();
    while (!done && clock::now() < deadline) {
        ioc.run_one_until(deadline);
    }
    if (!done) {
        throw std::runtime_error("test coroutine did not finish in time");
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
    return std::move(*out);
}

/// Short deadlines so failure tests run in well under a second each.
inline connection_options options_for(std::uint16_t port) {
    connection_options o;
    o.host = "127.0.0.1";
    o.port = port;
    o.connect_timeout = 1000ms;
    o.op_timeout = 200ms;
    o.health_check_interval = 200ms;
    o.reconnect_min = 20ms;
    o.reconnect_max = 200ms;
    return o;
}

/// A test redis-server, an io_context and a started client on it (options_for() after
/// `tweak`): the set-up most tests need.
struct client_fixture {
    explicit client_fixture(void (*tweak)(connection_options&) = nullptr,
                            redis_server_options server_options = {})
        : server(std::move(server_options)),
          c(ioc.get_executor(), tweaked(server.port(), tweak), nullptr) {
        c.start();
    }
    static connection_options tweaked(std::uint16_t port, void (*tweak)(connection_options&)) {
        auto o = options_for(port);
        if (tweak != nullptr) {
            tweak(o);
        }
        return o;
    }

    redis_server server;
    asio::io_context ioc{1};
    client c;
};

/// A logger writing into a string stream the test inspects (thread-safe sink).
struct captured_log {
    std::shared_ptr<std::ostringstream> text = std::make_shared<std::ostringstream>();
    std::shared_ptr<spdlog::logger> logger = [this] {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*text);
        auto l = std::make_shared<spdlog::logger>("redis-test", sink);
        l->set_level(spdlog::level::debug);
        return l;
    }();
    std::string str() const {
        logger->flush();
        return text->str();
    }
};

/// A one-shot event on one executor: notify() wakes wait().
class event {
public:
    explicit event(const asio::any_io_executor& ex) : timer_(ex) {
        timer_.expires_at(clock::time_point::max());
    }
    void notify() {
        fired_ = true;
        timer_.cancel();
    }
    bool fired() const noexcept { return fired_; }
    void reset() noexcept { fired_ = false; }
    /// True once notified; false at `deadline`.
    asio::awaitable<bool> wait(clock::time_point deadline) {
        asio::steady_timer limit(timer_.get_executor());
        limit.expires_at(deadline);
        while (!fired_ && clock::now() < deadline) {
            co_await (timer_.async_wait(use_nothrow) || limit.async_wait(use_nothrow));
        }
        co_return fired_;
    }

private:
    asio::steady_timer timer_;
    bool fired_ = false;
};

/// Milliseconds since `start`.
inline double ms_since(clock::time_point start) {
    return std::chrono::duration<double, std::milli>(clock::now() - start).count();
}

}  // namespace imagegate::redis::test
