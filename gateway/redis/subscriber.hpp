// A dedicated RESP2 SUBSCRIBE connection: delivers (channel, payload) messages to a
// callback, resubscribes after every reconnect and then tells its owner, who must assume
// that messages were lost meanwhile (pub/sub is at-most-once).
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/redis/connection.hpp"
#include "gateway/redis/options.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::redis {

/// What the subscriber calls, on its executor, from its read loop: handlers must not block.
/// An exception a handler throws is logged and swallowed.
struct subscriber_handlers {
    /// One PUBLISHed message. The views are valid during the call only; the payload's bytes
    /// come from whoever can PUBLISH: treat them as hostile.
    std::function<void(std::string_view channel, std::string_view payload)> on_message;
    /// Every channel is (again) confirmed: called after the first subscription and after
    /// each resubscription. Anything published while the subscriber was down is lost, so
    /// the owner resynchronises here (the fleet tier flushes its L1).
    std::function<void()> on_subscribed;
};

/// Owned by the composition root, one per process; the io_context must outlive it. Publishing goes
/// through a client
/// (`PUBLISH channel payload`); a subscribed connection can do nothing else.
/// Thread-safety: start(), stop(), is_subscribed(), the counters and get_executor() from any
/// thread; handlers run on the executor (serial: one-thread io_context or strand).
class subscriber {
public:
    /// Throws std::invalid_argument when `opts` fails check() or the TLS CA file cannot be
    /// loaded, or `channels` is empty. `log` may be null.
    subscriber(asio::any_io_executor ex, connection_options opts, std::vector<std::string> channels,
               subscriber_handlers handlers, std::shared_ptr<spdlog::logger> log);
    ~subscriber();
    subscriber(const subscriber&) = delete;
    subscriber& operator=(const subscriber&) = delete;

    void start();
    void stop();

    /// Connected and every channel confirmed.
    bool is_subscribed() const noexcept;
    /// Messages delivered to on_message.
    std::uint64_t messages() const noexcept;
    /// Subscriptions confirmed (1 after the first, +1 per resubscription).
    std::uint64_t subscriptions() const noexcept;
    /// Connections opened again after one was lost or failed to open.
    std::uint64_t reconnects() const noexcept;
    /// Waits (on the executor) until subscribed (true) or `deadline` / stop (false).
    asio::awaitable<bool> wait_subscribed(clock::time_point deadline);
    asio::any_io_executor get_executor() const noexcept;

private:
    class impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace imagegate::redis
