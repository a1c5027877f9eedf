// The pipelined part of redis::connection: exec, the reader, writer and watchdog loops,
// push mode and close. Connecting lives in connect.cpp.
#include "gateway/redis/connection.hpp"

#include "gateway/redis/detail.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/logger.h>

namespace imagegate::redis {
namespace {

constexpr std::size_t read_chunk = 16 * 1024;
// A write buffer grown by a burst is not kept beyond this.
constexpr std::size_t keep_write_capacity = 1024 * 1024;

/// Completion of a loop: an exception (a bug, or bad_alloc) is logged and closes the
/// connection; it never escapes into the io_context.
struct loop_done {
    std::weak_ptr<connection> conn;
    std::shared_ptr<spdlog::logger> log;
    const char* name;
    void operator()(const std::exception_ptr& ep) const {
        if (detail::log_task_exception(*log, name, ep)) {
            if (auto c = conn.lock()) {
                c->close(error::connection_lost);
            }
        }
    }
};

}  // namespace

connection::connection(private_tag, executor_type ex, std::shared_ptr<const connection_context> ctx)
    : ex_(std::move(ex)),
      ctx_(std::move(ctx)),
      resolver_(ex_),
      reader_(ctx_->opts.limits),
      read_buffer_(read_chunk),
      write_signal_(ex_),
      watchdog_(ex_),
      closed_signal_(ex_) {
    if (ctx_->tls) {
        tls_.emplace(ex_, *ctx_->tls);
    } else {
        plain_.emplace(ex_);
    }
    // A timer without an expiry would complete a wait at once.
    closed_signal_.expires_at(clock::time_point::max());
}

connection::~connection() = default;

asio::ip::tcp::socket& connection::lowest() noexcept { return tls_ ? tls_->next_layer() : *plain_; }

void connection::start_loops() {
    auto self = shared_from_this();
    asio::co_spawn(ex_, read_loop(self), loop_done{self, ctx_->log, "connection read loop"});
    asio::co_spawn(ex_, write_loop(self), loop_done{self, ctx_->log, "connection write loop"});
    asio::co_spawn(ex_, watch_loop(self), loop_done{self, ctx_->log, "connection watchdog"});
}

boost::system::result<void> connection::queue(const command& cmd) {
    const auto& o = ctx_->opts;
    std::size_t bytes = 0;
    for (const auto& a : cmd.args()) {
        bytes += a.size();
    }
    if (bytes > o.max_write_buffer_bytes) {
        return make_error_code(error::command_too_large);
    }
    if (pending_.size() >= o.max_pending ||
        write_buffer_.size() + bytes > o.max_write_buffer_bytes) {
        return make_error_code(error::too_many_pending);
    }
    auto appended = append_resp(write_buffer_, cmd);
    if (!appended) {
        return appended;
    }
    if (writer_idle_) {
        writer_idle_ = false;
        write_signal_.cancel();
    }
    return {};
}

asio::awaitable<boost::system::result<reply>> connection::exec(command cmd,
                                                               clock::time_point deadline) {
    detail::require_executor(ex_, "redis::connection::exec");
    if (closed_) {
        co_return reason_;
    }
    if (push_handler_) {
        co_return make_error_code(error::protocol_error);  // a caller's bug: replies are pushes
    }
    // A pipeline whose oldest reply is already overdue is broken: say so now rather than
    // queue behind it (the watchdog may not have run yet).
    if (close_if_stalled()) {
        co_return reason_;
    }
    const auto now = clock::now();
    if (deadline <= now) {
        co_return make_error_code(error::timeout);  // never sent: nobody would read the reply
    }
    auto queued = queue(cmd);
    if (!queued) {
        co_return queued.error();
    }
    auto op = std::make_shared<pending_op>(ex_);
    op->queued_at = now;
    op->wake.expires_at(std::min(deadline, now + ctx_->opts.op_timeout));
    pending_.push_back(op);
    if (watchdog_idle_) {
        watchdog_idle_ = false;
        watchdog_.cancel();
    }

    // One wait, three ways out: the reply (or the connection's failure) arrived and the
    // timer was cancelled; the timer expired; the caller's own cancellation slot fired.
    auto [ec] = co_await op->wake.async_wait(use_nothrow);
    if (op->outcome) {
        co_return std::move(*op->outcome);
    }
    op->abandoned = true;  // the FIFO keeps it until its reply arrives, then drops the reply
    if (ec == asio::error::operation_aborted) {
        co_return make_error_code(error::cancelled);
    }
    // Timed out at the head of the line by op_timeout: the connection is broken as of now,
    // so whoever calls next sees it closed (the watchdog, due at the same instant, may run
    // after this caller resumes).
    close_if_stalled();
    co_return make_error_code(error::timeout);
}

bool connection::close_if_stalled() {
    const auto op_timeout = ctx_->opts.op_timeout;
    if (closed_ || pending_.empty() || clock::now() < pending_.front()->queued_at + op_timeout) {
        return closed_;
    }
    ctx_->log->warn(
        "redis {}:{} stalled: oldest of {} replies overdue by op_timeout ({} ms); "
        "closing the connection",
        ctx_->opts.host, ctx_->opts.port, pending_.size(), op_timeout.count());
    close(error::pipeline_stalled);
    return true;
}

void connection::enter_push_mode(std::function<void(reply)> handler) {
    detail::require_executor(ex_, "redis::connection::enter_push_mode");
    BOOST_ASSERT(pending_.empty());
    push_handler_ = std::move(handler);
}

boost::system::result<void> connection::send(const command& cmd) {
    detail::require_executor(ex_, "redis::connection::send");
    if (closed_) {
        return reason_;
    }
    return queue(cmd);
}

void connection::deliver(reply r) {
    if (push_handler_) {
        try {
            push_handler_(std::move(r));
        } catch (const std::exception& e) {
            ctx_->log->error("redis push handler threw: {}", e.what());
        } catch (...) {
            ctx_->log->error("redis push handler threw an unknown exception");
        }
        return;
    }
    if (pending_.empty()) {
        ctx_->log->warn("redis sent a reply nobody asked for: {}",
                        printable(r.kind == reply_kind::array ? "(array)" : r.text));
        close(error::protocol_error);
        return;
    }
    auto op = std::move(pending_.front());
    pending_.pop_front();
    if (op->abandoned) {
        return;
    }
    op->outcome.emplace(std::move(r));
    op->wake.cancel();
}

asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> connection::read_some() {
    const auto buf = asio::buffer(read_buffer_);
    if (tls_) {
        auto r = co_await tls_->async_read_some(buf, use_nothrow);
        co_return r;
    }
    auto r = co_await plain_->async_read_some(buf, use_nothrow);
    co_return r;
}

asio::awaitable<boost::system::error_code> connection::write_all(const std::string& bytes) {
    const auto buf = asio::buffer(bytes);
    if (tls_) {
        auto [ec, n] = co_await asio::async_write(*tls_, buf, use_nothrow);
        co_return ec;
    }
    auto [ec, n] = co_await asio::async_write(*plain_, buf, use_nothrow);
    co_return ec;
}

asio::awaitable<void> connection::read_loop(std::shared_ptr<connection> self) {
    while (!closed_) {
        auto [ec, n] = co_await read_some();
        if (closed_) {
            break;
        }
        if (ec) {
            ctx_->log->info("redis connection to {}:{} lost: {}", ctx_->opts.host, ctx_->opts.port,
                            ec.message());
            close(error::connection_lost);
            break;
        }
        auto fed = reader_.feed({read_buffer_.data(), n});
        while (fed && !closed_) {
            auto next = reader_.next();
            if (!next) {
                fed = next.error();
                break;
            }
            if (!*next) {
                break;
            }
            deliver(std::move(**next));
        }
        if (!fed && !closed_) {
            // hiredis' own words only for malformed RESP; a cap is ours ("out of memory" to it).
            const bool malformed = fed.error() == error::protocol_error;
            ctx_->log->warn("redis reply from {}:{} refused: {}{}{}", ctx_->opts.host,
                            ctx_->opts.port, fed.error().message(), malformed ? ": " : "",
                            malformed ? printable(reader_.parser_message()) : std::string());
            close(static_cast<error>(fed.error().value()));
        }
    }
    (void)self;
}

asio::awaitable<void> connection::write_loop(std::shared_ptr<connection> self) {
    std::string out;
    while (!closed_) {
        if (write_buffer_.empty()) {
            writer_idle_ = true;
            write_signal_.expires_at(clock::time_point::max());
            auto [ec] = co_await write_signal_.async_wait(use_nothrow);
            (void)ec;
            continue;
        }
        // Everything queued while the previous write was in flight goes out in this one.
        out.swap(write_buffer_);
        const auto ec = co_await write_all(out);
        if (ec) {
            if (!closed_) {
                ctx_->log->info("redis write to {}:{} failed: {}", ctx_->opts.host, ctx_->opts.port,
                                ec.message());
            }
            close(error::connection_lost);
            break;
        }
        writes_.fetch_add(1, std::memory_order_relaxed);
        out.clear();
        if (out.capacity() > keep_write_capacity) {
            std::string().swap(out);
        }
    }
    (void)self;
}

asio::awaitable<void> connection::watch_loop(std::shared_ptr<connection> self) {
    // Sleeps until the oldest pending command's op deadline (or until exec() wakes it when
    // the FIFO stops being empty). A reply answered meanwhile just means one early wake-up.
    const auto op_timeout = ctx_->opts.op_timeout;
    while (!closed_) {
        if (pending_.empty()) {
            watchdog_idle_ = true;
            watchdog_.expires_at(clock::time_point::max());
        } else {
            watchdog_.expires_at(pending_.front()->queued_at + op_timeout);
        }
        auto [ec] = co_await watchdog_.async_wait(use_nothrow);
        (void)ec;
        watchdog_idle_ = false;
        close_if_stalled();
    }
    (void)self;
}

void connection::close(error reason) {
    if (closed_) {
        return;
    }
    closed_ = true;
    closed_flag_.store(true, std::memory_order_relaxed);
    reason_ = make_error_code(reason);
    // No TLS close_notify: nothing we read relies on end-of-stream framing, and waiting for
    // a slow or hostile server's answer would only hold this socket (see upstream
    // connection::close for the same reasoning).
    boost::system::error_code ignored;
    resolver_.cancel();
    lowest().close(ignored);
    write_signal_.cancel();
    watchdog_.cancel();
    closed_signal_.cancel();
    const auto now = clock::now();
    for (auto& op : pending_) {
        if (!op->abandoned) {
            const bool overdue = op->wake.expiry() <= now;
            op->outcome.emplace(overdue ? make_error_code(error::timeout) : reason_);
            op->wake.cancel();
        }
    }
    pending_.clear();
}

asio::awaitable<boost::system::error_code> connection::wait_closed() {
    detail::require_executor(ex_, "redis::connection::wait_closed");
    if (!closed_) {
        auto [ec] = co_await closed_signal_.async_wait(use_nothrow);
        (void)ec;
    }
    // closed_signal_ never expires (its expiry is max): only close() or the caller's
    // cancellation ends the wait.
    co_return closed_ ? reason_ : make_error_code(error::cancelled);
}

}  // namespace imagegate::redis
