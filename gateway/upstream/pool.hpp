// The connection pool of one upstream origin on one I/O worker: opens connections on demand
// within the origin's shared limit, lends them through move-only leases, parks reusable
// ones, closes idle and broken ones.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/upstream/connection.hpp"
#include "gateway/upstream/connection_limit.hpp"
#include "gateway/upstream/stats.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

namespace spdlog {
class logger;
}

namespace imagegate::upstream {

/// Pool limits (mapped from config::upstream_settings by the composition root).
struct pool_options {
    /// Connections at most, in any state (connecting + idle + in use + closing), over all
    /// the pools of the origin (see connection_limit).
    std::size_t max_connections = 64;
    /// Deadline for resolve + connect + handshake of a new connection.
    std::chrono::milliseconds connect_timeout{5000};
    /// An idle connection is closed after this long.
    std::chrono::milliseconds idle_timeout{30000};
    /// A connection is closed after this many exchanges (0: unlimited).
    std::uint64_t max_requests_per_connection = 1000;
    /// How long acquire() waits at most (also bounded by the caller's deadline).
    std::chrono::milliseconds acquire_timeout{5000};
};

namespace detail {
class pool_impl;
}

/// Which connections an acquire accepts.
enum class acquire_mode {
    any,    ///< an idle connection if there is one, else a new one
    fresh,  ///< a connection that has never been used (the retry after a stale reuse)
};

/// A borrowed connection. Move-only. Destroying it hands the connection back to the pool (at
/// once on the pool's worker, where leases normally end; posted there from anywhere else):
/// parked for reuse only if mark_reusable() was called and the connection agrees (complete
/// keep-alive exchange), otherwise closed.
/// Thread-safety: one lease is used by one coroutine at a time; distinct leases are
/// independent.
class lease {
public:
    lease() noexcept = default;
    lease(lease&& other) noexcept;
    lease& operator=(lease&& other) noexcept;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease();

    explicit operator bool() const noexcept { return conn_ != nullptr; }
    connection& conn() const noexcept { return *conn_; }
    connection* operator->() const noexcept { return conn_.get(); }

    /// The connection served an exchange before this lease.
    bool is_reused() const noexcept { return reused_; }

    /// Call after a complete response with no error; without it the connection is closed.
    void mark_reusable() noexcept { reusable_ = true; }

    /// Gives the connection back now (same as destruction).
    void release() noexcept;

private:
    friend class detail::pool_impl;
    lease(std::shared_ptr<detail::pool_impl> pool, std::shared_ptr<connection> conn,
          std::uint64_t slot_id, bool reused) noexcept;

    std::shared_ptr<detail::pool_impl> pool_;
    std::shared_ptr<connection> conn_;
    std::uint64_t slot_id_ = 0;
    bool reused_ = false;
    bool reusable_ = false;
};

/// One pool per origin and I/O worker. Owned by the client; must be destroyed before the
/// workers' contexts. All pool state, its connections and their timers are confined to the
/// worker `ex` belongs to: no strand and no mutex; every entry point checks that it runs
/// there (IMAGEGATE_CHECK, every build).
/// Thread-safety: acquire() and runs_here() on the pool's worker only; shutdown() and
/// is_shutting_down() from any thread.
class pool {
public:
    /// `ex` must be a worker's executor (gateway/core/workers.hpp). `conn_opts->tls` null
    /// means plaintext; the client decides whether that is allowed. `limit` is the origin's
    /// limit shared with its other pools, where this pool is member `member`; null gives the
    /// pool a limit of `opts.max_connections` of its own.
    pool(asio::any_io_executor ex, std::shared_ptr<const connection_options> conn_opts,
         pool_options opts, std::shared_ptr<upstream::stats> stats,
         std::shared_ptr<spdlog::logger> log = {},
         std::shared_ptr<connection_limit> limit = nullptr, std::size_t member = 0);
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;
    /// Calls shutdown().
    ~pool();

    /// A connection by min(deadline, now + acquire_timeout). Errors: errc::pool_exhausted
    /// (waited out), errc::shutting_down, and the classified connect failure of a connect
    /// that was opened for this waiter (upstream_connect_failed, upstream_tls_failed,
    /// upstream_timeout). Must be called on the pool's worker.
    asio::awaitable<boost::system::result<lease>> acquire(clock::time_point deadline,
                                                          acquire_mode mode = acquire_mode::any);

    /// The calling thread is the pool's worker.
    bool runs_here() const noexcept;

    /// Closes idle connections, aborts connects and in-flight exchanges, fails every waiter
    /// with errc::shutting_down; lent slots are erased when their leases end. Idempotent.
    /// Asynchronous: returns at once, the work runs on the pool's worker.
    void shutdown();

    /// shutdown() was called (any thread).
    bool is_shutting_down() const noexcept;

private:
    std::shared_ptr<detail::pool_impl> impl_;
};

}  // namespace imagegate::upstream
