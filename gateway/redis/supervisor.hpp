// The reconnect loop shared by the client and the subscriber: open a connection, run a
// session on it until it closes, back off (jittered, exponential), repeat until stopped.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/redis/connection.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

namespace imagegate::redis {

/// The delay before reconnect attempt `attempt` (0 = the first after a failure):
/// min·2^attempt capped at max, then scaled into [half, full] by `unit` in [0, 1). Pure.
std::chrono::milliseconds backoff_delay(unsigned attempt, std::chrono::milliseconds min,
                                        std::chrono::milliseconds max, double unit) noexcept;

namespace detail {

struct stop_signal;

/// Owns the current connection and the reconnect loop. Owned by a shared_ptr held by its
/// facade (client, subscriber) and by the loop itself, which ends after stop().
/// Thread-safety: start(), stop(), is_up(), reconnects(), connect_failures() and
/// get_executor() from any thread; everything else on the executor (serial: one-thread
/// io_context or strand).
class supervisor : public std::enable_shared_from_this<supervisor> {
public:
    /// `up_when_open`: is_up() turns true as soon as a connection is open (client), or only
    /// when the session calls set_up(true) (subscriber: once subscribed).
    supervisor(asio::any_io_executor ex, std::shared_ptr<const connection_context> ctx,
               std::string role, bool up_when_open);
    virtual ~supervisor();
    supervisor(const supervisor&) = delete;
    supervisor& operator=(const supervisor&) = delete;

    /// Starts the loop (once; any thread).
    void start();
    /// Closes the connection and ends the loop (any thread; idempotent).
    void stop();

    bool is_up() const noexcept { return up_.load(std::memory_order_relaxed); }
    /// Connections opened after a previous one was lost or failed to open.
    std::uint64_t reconnects() const noexcept {
        return reconnects_.load(std::memory_order_relaxed);
    }
    /// Attempts to open a connection that failed.
    std::uint64_t connect_failures() const noexcept {
        return connect_failures_.load(std::memory_order_relaxed);
    }

    /// Waits until up (true) or `deadline` / stop (false). On the executor.
    asio::awaitable<bool> wait_up(clock::time_point deadline);

    const asio::any_io_executor& get_executor() const noexcept { return ex_; }
    const connection_context& context() const noexcept { return *ctx_; }

protected:
    /// Runs while `conn` is open: returns when it closed (or after closing it).
    virtual asio::awaitable<void> run_session(std::shared_ptr<connection> conn) = 0;
    /// Called on the executor when stop() runs, before the connection is closed.
    virtual void on_stop() {}
    /// Statistics hooks, on the executor: a connection opened after an earlier one was lost
    /// or failed; an attempt failed; is_up() changed.
    virtual void on_reconnect() {}
    virtual void on_connect_failure() {}
    virtual void on_up_changed(bool /*up*/) {}

    void set_up(bool up) noexcept;
    bool stopping() const noexcept { return stopping_; }
    /// The open connection, or null (on the executor).
    const std::shared_ptr<connection>& current() const noexcept { return conn_; }
    /// Sleeps until `deadline`, the connection's close or stop(); true when the connection
    /// is still open afterwards.
    asio::awaitable<bool> sleep_while_open(std::shared_ptr<connection> conn,
                                           clock::time_point deadline);

private:
    asio::awaitable<void> loop(std::shared_ptr<supervisor> self);
    void do_stop();

    asio::any_io_executor ex_;
    std::shared_ptr<const connection_context> ctx_;
    std::string role_;  // "client" or "subscriber", for logs
    std::shared_ptr<connection> conn_;
    asio::steady_timer backoff_;         // the delay between attempts; cancelled by stop()
    asio::steady_timer up_signal_;       // wait_up() sleeps on it; cancelled when up or stopped
    std::unique_ptr<stop_signal> stop_;  // aborts an open() in flight
    std::minstd_rand rng_;
    bool up_when_open_;
    bool started_ = false;
    bool stopping_ = false;
    std::atomic<bool> up_{false};
    std::atomic<std::uint64_t> reconnects_{0};
    std::atomic<std::uint64_t> connect_failures_{0};
};

}  // namespace detail
}  // namespace imagegate::redis
