// The Redis client the fleet tier uses: one pipelined command connection on the caller's
// io_context, reconnected in the background, failing fast while down; with counters, an
// op-latency histogram and EVALSHA-with-EVAL-fallback for scripts.
#pragma once

#include "gateway/metrics/registry.hpp"
#include "gateway/core/net.hpp"
#include "gateway/redis/command.hpp"
#include "gateway/redis/connection.hpp"
#include "gateway/redis/options.hpp"
#include "gateway/redis/reply.hpp"
#include "gateway/redis/script.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::redis {

/// Op latency buckets, in microseconds: 50 µs .. 250 ms (loopback Redis answers in tens of
/// microseconds; op_timeout is typically 100 ms).
inline constexpr metrics::histogram::bounds_type latency_bounds{
    50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000};

/// Counters of one or more clients (several clients, one per io_context, may share one).
/// Thread-safety: any thread; relaxed atomics, read without a consistent snapshot.
struct client_stats {
    using counter = std::atomic<std::uint64_t>;
    counter ops{0};               ///< exec/eval_script calls (an EVAL fallback counts once more)
    counter errors{0};            ///< calls that got no reply (any redis::error, incl. below)
    counter timeouts{0};          ///< of those: timeout or pipeline_stalled
    counter down_refusals{0};     ///< of those: not_connected (failed at once, client down)
    counter error_replies{0};     ///< replies that were Redis errors (`-ERR`, `-NOSCRIPT`, …)
    counter noscript_reloads{0};  ///< EVALSHA answered NOSCRIPT, retried as EVAL
    counter reconnects{0};        ///< connections opened after one was lost or failed to open
    counter connect_failures{0};  ///< attempts to open a connection that failed
    counter connections_up{0};    ///< gauge: clients whose connection is up right now
    metrics::histogram latency{latency_bounds};  ///< exec start to reply, replies only

    /// Prometheus text: imagegate_redis_{ops,errors,timeouts,down_refusals,error_replies,
    /// noscript_reloads,reconnects,connect_failures}_total, imagegate_redis_connections_up
    /// and imagegate_redis_op_seconds.
    void render(std::string& out) const;
};

/// A Redis client bound to one executor. Create one per io_context (one per I/O thread):
/// callers running on that context call exec() directly, with no executor hop, and no
/// state is shared between threads except the stats.
/// Owned by the composition root; the io_context must outlive it. Thread-safety: start(), stop(),
/// is_up(), reconnects(), stats() and get_executor() from any thread; exec(), eval_script() and
/// wait_up() only from coroutines running on get_executor() (checked at run time, every build).
class client {
public:
    /// `opts` must pass check(); throws std::invalid_argument otherwise, or when the TLS CA
    /// file cannot be loaded (start-up errors). `log` may be null (no logs); `stats` may be
    /// null (the client keeps its own).
    client(asio::any_io_executor ex, connection_options opts, std::shared_ptr<spdlog::logger> log,
           std::shared_ptr<client_stats> stats = nullptr);
    /// Stops the client; its background work ends on its executor.
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// Starts connecting in the background.
    void start();
    /// Closes the connection, fails every waiting call with shutting_down, ends reconnects.
    void stop();

    /// Sends `cmd` and returns its reply (a Redis error reply is a reply, see
    /// reply::is_error). While the client is down it fails at once with not_connected: it
    /// never waits for a reconnect. Waits at most until min(deadline, now + op_timeout).
    asio::awaitable<boost::system::result<reply>> exec(
        command cmd, clock::time_point deadline = clock::time_point::max());

    /// EVALSHA `s.sha1()` with `keys` and `args`; on a NOSCRIPT error reply, EVAL with the
    /// body (which loads it, so the next call's EVALSHA succeeds). One deadline for both.
    asio::awaitable<boost::system::result<reply>> eval_script(
        script s, std::vector<std::string> keys, std::vector<std::string> args,
        clock::time_point deadline = clock::time_point::max());

    /// Waits until connected (true) or `deadline` / stop (false).
    asio::awaitable<bool> wait_up(clock::time_point deadline);

    /// Connected and handshaken: exec() will be sent.
    bool is_up() const noexcept;
    /// Connections opened again after one was lost or failed to open.
    std::uint64_t reconnects() const noexcept;
    const client_stats& stats() const noexcept { return *stats_; }
    asio::any_io_executor get_executor() const noexcept;

private:
    class impl;
    std::shared_ptr<client_stats> stats_;
    std::shared_ptr<impl> impl_;
};

}  // namespace imagegate::redis
