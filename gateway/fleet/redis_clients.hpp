// The fleet tier's Redis connections: one pipelined command client per I/O worker, one
// subscriber per process on `<prefix>:events`, and the breaker they share. The L2 cache, the
// purge broadcast and the fleet budget all reach Redis through this holder.
#pragma once

#include "config/settings.hpp"
#include "gateway/core/net.hpp"
#include "gateway/redis/breaker.hpp"
#include "gateway/redis/client.hpp"
#include "gateway/redis/options.hpp"
#include "gateway/redis/subscriber.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::fleet {

/// The connection options `[redis]` describes: URL, ACL user, password file, TLS trust,
/// timeouts; refused with one operator sentence (never containing the password).
boost::system::result<redis::connection_options, redis::option_error> connection_options_from(
    const config::settings& s);

/// `<prefix>:events`: the channel of purge and fill events.
std::string events_channel(const config::settings& s);

/// Owned by the composition root, built only when `[redis] url` is set; the workers'
/// io_contexts must outlive it. Thread-safety: every member from any thread, except that a
/// client returned by for_current_worker() is used only on that worker (redis::client).
class redis_clients {
public:
    /// One client per executor in `workers` (index i = worker i) and one subscriber on
    /// `subscriber_ex`, subscribed to events_channel(s); nothing connects before start().
    /// Throws std::invalid_argument when `[redis]` is unusable (connection_options_from).
    redis_clients(std::vector<asio::any_io_executor> workers, asio::any_io_executor subscriber_ex,
                  const config::settings& s, redis::subscriber_handlers handlers,
                  std::shared_ptr<spdlog::logger> log);
    ~redis_clients();
    redis_clients(const redis_clients&) = delete;
    redis_clients& operator=(const redis_clients&) = delete;

    /// Starts connecting (clients and subscriber) in the background.
    void start();
    /// Closes every connection; waiting calls fail with shutting_down.
    void stop();

    /// The client of the calling I/O worker (checked: a caller on any other thread is a bug).
    redis::client& for_current_worker();
    /// The client of worker `i` (i < size()).
    redis::client& for_worker(std::size_t i);
    std::size_t size() const noexcept { return clients_.size(); }
    redis::subscriber& events() noexcept { return *subscriber_; }

    /// Shared by every user of Redis: record each operation's outcome (record()), skip Redis
    /// while it is open.
    redis::breaker& breaker() noexcept { return breaker_; }
    /// Feeds the breaker with one operation's outcome: a reply (error replies included: the
    /// server answered) closes it, a missing reply counts as a failure (a cancelled caller
    /// does not count).
    void record(const boost::system::error_code& ec);

    /// `[redis] key_prefix`.
    const std::string& key_prefix() const noexcept { return prefix_; }
    /// `[redis] op_timeout`: the deadline of every request-path operation.
    std::chrono::milliseconds op_timeout() const noexcept { return op_timeout_; }
    /// Redis is usable: the breaker is closed, a client of this worker set is up and the
    /// subscriber is subscribed. False means degraded (still ready: L1 serves).
    bool healthy() const;
    /// Counters of all the clients together.
    const redis::client_stats& stats() const noexcept { return *stats_; }

private:
    std::shared_ptr<redis::client_stats> stats_;
    std::vector<std::unique_ptr<redis::client>> clients_;
    std::unique_ptr<redis::subscriber> subscriber_;
    redis::breaker breaker_;
    std::string prefix_;
    std::chrono::milliseconds op_timeout_;
};

}  // namespace imagegate::fleet
