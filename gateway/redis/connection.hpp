// One Redis connection over a socket Asio owns (TCP or verified TLS): connect under one
// deadline, AUTH/SELECT/PING, then pipelined commands whose replies are matched in order,
// each under its own deadline, with a watchdog that breaks a stalled pipeline.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/redis/command.hpp"
#include "gateway/redis/error.hpp"
#include "gateway/redis/options.hpp"
#include "gateway/redis/reader.hpp"
#include "gateway/redis/reply.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::redis {

using clock = std::chrono::steady_clock;

/// What all connections of one client or subscriber share. Owned through shared_ptr by
/// the supervisor and every connection. Thread-safety: immutable once built, any thread.
struct connection_context {
    connection_options opts;
    /// The TLS client context (verify_peer, trusted CAs); null when opts.tls is false.
    std::shared_ptr<asio::ssl::context> tls;
    /// Never null (make_context substitutes a logger without sinks).
    std::shared_ptr<spdlog::logger> log;
};

/// Checks `opts` (check()), builds the TLS context when opts.tls (CA file, or the system
/// store), and fills in a silent logger when `log` is null.
boost::system::result<std::shared_ptr<const connection_context>, option_error> make_context(
    connection_options opts, std::shared_ptr<spdlog::logger> log);

/// One connection. Owned through shared_ptr by its user (client, subscriber) and by its own
/// three background loops (reader, writer, watchdog), which end once it is closed.
///
/// Thread-safety: every member function except is_open(), writes() and get_executor() must
/// be called on the connection's executor, which must be serial (an io_context run by one
/// thread, or a strand); checked at run time (detail::require_executor). Any number of
/// coroutines on that executor may have exec() in flight at once: commands go out in call
/// order, coalesced into one write while the previous write is in flight, and replies are
/// matched first-in first-out.
class connection : public std::enable_shared_from_this<connection> {
    struct private_tag {};

public:
    using executor_type = asio::any_io_executor;

    /// Resolves, connects and (with TLS) handshakes within ctx->opts.connect_timeout, then
    /// sends AUTH (when a password is set), SELECT (db != 0) and PING, each within
    /// op_timeout. Errors: resolve_failed, connect_failed, connect_timeout, tls_failed,
    /// auth_failed, select_failed, handshake_failed, timeout, or the error that closed the
    /// connection meanwhile.
    static asio::awaitable<boost::system::result<std::shared_ptr<connection>>> open(
        executor_type ex, std::shared_ptr<const connection_context> ctx);

    /// Sends `cmd` and waits for its reply until min(deadline, now + op_timeout). A Redis
    /// error reply is a reply (reply_kind::error). Errors: timeout (the reply, if it comes,
    /// is discarded), cancelled (the caller's cancellation slot fired; same), too_many_pending,
    /// command_too_large, or why the connection closed (pipeline_stalled, connection_lost,
    /// protocol_error, a reply cap, shutting_down). Must not be called in push mode.
    asio::awaitable<boost::system::result<reply>> exec(
        command cmd, clock::time_point deadline = clock::time_point::max());

    /// Push mode, for RESP2 SUBSCRIBE: from now on every reply goes to `handler` (on this
    /// executor, from the read loop: it must not block; an exception it throws is logged and
    /// swallowed) instead of to exec() callers. Requires no exec() in flight.
    void enter_push_mode(std::function<void(reply)> handler);

    /// Queues `cmd` without waiting for a reply (push mode: SUBSCRIBE, PING).
    boost::system::result<void> send(const command& cmd);

    /// Closes the socket (no TLS close_notify: see the definition) and fails every waiting
    /// exec() with `reason`, or with timeout for those already past their deadline.
    /// Idempotent; the first reason is kept.
    void close(error reason);

    /// Waits until the connection is closed and returns why; returns error::cancelled if
    /// the caller's cancellation slot fires first.
    asio::awaitable<boost::system::error_code> wait_closed();

    /// Any thread.
    bool is_open() const noexcept { return !closed_flag_.load(std::memory_order_relaxed); }
    /// Why it closed; empty while open.
    boost::system::error_code close_reason() const noexcept { return reason_; }
    /// Commands sent (or queued) and not yet answered, including abandoned ones.
    std::size_t pending() const noexcept { return pending_.size(); }
    /// Socket writes so far (any thread): fewer than commands when writes were coalesced.
    std::uint64_t writes() const noexcept { return writes_.load(std::memory_order_relaxed); }
    executor_type get_executor() const noexcept { return ex_; }

    connection(private_tag, executor_type ex, std::shared_ptr<const connection_context> ctx);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

private:
    /// One exec() waiting for its reply. Shared by the caller's frame and the FIFO.
    struct pending_op {
        explicit pending_op(const executor_type& ex) : wake(ex) {}
        /// Expires at the caller's deadline; cancelled when the outcome is set.
        asio::steady_timer wake;
        std::optional<boost::system::result<reply>> outcome;
        clock::time_point queued_at;
        /// The caller left (deadline or cancellation): the reply is read and dropped.
        bool abandoned = false;
    };

    asio::awaitable<boost::system::result<void>> connect_transport();
    asio::awaitable<boost::system::result<void>> handshake();
    void start_loops();
    asio::awaitable<void> read_loop(std::shared_ptr<connection> self);
    asio::awaitable<void> write_loop(std::shared_ptr<connection> self);
    asio::awaitable<void> watch_loop(std::shared_ptr<connection> self);
    asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some();
    asio::awaitable<boost::system::error_code> write_all(const std::string& bytes);
    boost::system::result<void> queue(const command& cmd);
    /// Closes with pipeline_stalled when the oldest reply is overdue by op_timeout; true
    /// when the connection is (now) closed.
    bool close_if_stalled();
    void deliver(reply r);
    asio::ip::tcp::socket& lowest() noexcept;

    executor_type ex_;
    std::shared_ptr<const connection_context> ctx_;
    asio::ip::tcp::resolver resolver_;
    std::optional<asio::ssl::stream<asio::ip::tcp::socket>> tls_;  // engaged with TLS
    std::optional<asio::ip::tcp::socket> plain_;                   // engaged without
    reply_reader reader_;
    std::vector<char> read_buffer_;
    std::string write_buffer_;                         // frames queued since the last write started
    std::deque<std::shared_ptr<pending_op>> pending_;  // FIFO: sent order = reply order
    std::function<void(reply)> push_handler_;          // set: push mode
    asio::steady_timer write_signal_;   // the writer sleeps on it when it has nothing to send
    asio::steady_timer watchdog_;       // at the oldest pending command's op deadline
    asio::steady_timer closed_signal_;  // cancelled by close(): wakes wait_closed()
    bool writer_idle_ = false;
    bool watchdog_idle_ = false;
    bool closed_ = false;
    std::atomic<bool> closed_flag_{false};  // closed_, readable from any thread
    boost::system::error_code reason_;
    std::atomic<std::uint64_t> writes_{0};
};

}  // namespace imagegate::redis
