#include "gateway/redis/supervisor.hpp"

#include "gateway/redis/detail.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <spdlog/logger.h>

#include <algorithm>

namespace imagegate::redis {

std::chrono::milliseconds backoff_delay(unsigned attempt, std::chrono::milliseconds min,
                                        std::chrono::milliseconds max, double unit) noexcept {
    auto base = std::max<std::chrono::milliseconds::rep>(min.count(), 1);
    for (unsigned i = 0; i < attempt && base < max.count(); ++i) {
        base *= 2;
    }
    base = std::min(base, max.count());
    const double u = std::clamp(unit, 0.0, 1.0);
    const auto half = base / 2;
    return std::chrono::milliseconds(
        half + static_cast<decltype(base)>(static_cast<double>(base - half) * u));
}

namespace detail {
namespace {

using namespace asio::experimental::awaitable_operators;

/// Logs an exception that ended the loop; the loop's owner sees is_up() == false.
struct loop_done {
    std::shared_ptr<spdlog::logger> log;
    void operator()(const std::exception_ptr& ep) const {
        detail::log_task_exception(*log, "reconnect loop", ep);
    }
};

}  // namespace

// The cancellation signal lets stop() abort an open() in flight (resolve, connect,
// handshake, AUTH...), so stopping never waits for connect_timeout.
struct stop_signal {
    asio::cancellation_signal signal;
};

supervisor::supervisor(asio::any_io_executor ex, std::shared_ptr<const connection_context> ctx,
                       std::string role, bool up_when_open)
    : ex_(std::move(ex)),
      ctx_(std::move(ctx)),
      role_(std::move(role)),
      backoff_(ex_),
      up_signal_(ex_),
      stop_(std::make_unique<stop_signal>()),
      rng_(std::random_device{}()),
      up_when_open_(up_when_open) {
    up_signal_.expires_at(clock::time_point::max());
}

supervisor::~supervisor() = default;

void supervisor::start() {
    asio::dispatch(ex_, [self = shared_from_this()] {
        if (self->started_ || self->stopping_) {
            return;
        }
        self->started_ = true;
        asio::co_spawn(self->ex_, self->loop(self), loop_done{self->ctx_->log});
    });
}

void supervisor::stop() {
    asio::dispatch(ex_, [self = shared_from_this()] { self->do_stop(); });
}

void supervisor::do_stop() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    on_stop();
    stop_->signal.emit(asio::cancellation_type::terminal);
    if (conn_) {
        conn_->close(error::shutting_down);
    }
    backoff_.cancel();
    set_up(false);
    up_signal_.cancel();
}

void supervisor::set_up(bool up) noexcept {
    if (up_.exchange(up, std::memory_order_relaxed) != up) {
        on_up_changed(up);
    }
    if (up) {
        up_signal_.cancel();
    }
}

asio::awaitable<bool> supervisor::wait_up(clock::time_point deadline) {
    require_executor(ex_, "redis wait_up");
    asio::steady_timer timer(ex_);
    timer.expires_at(deadline);
    // Up *and* the connection still open: a connection closed a moment ago by a timed-out
    // call is down already, even before this loop's session has noticed.
    const auto usable = [this] { return is_up() && conn_ && conn_->is_open(); };
    while (!usable() && !stopping_ && clock::now() < deadline) {
        co_await (up_signal_.async_wait(use_nothrow) || timer.async_wait(use_nothrow));
        const auto cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none) {
            break;
        }
    }
    co_return usable();
}

asio::awaitable<bool> supervisor::sleep_while_open(std::shared_ptr<connection> conn,
                                                   clock::time_point deadline) {
    asio::steady_timer timer(ex_);
    timer.expires_at(deadline);
    co_await (conn->wait_closed() || timer.async_wait(use_nothrow));
    co_return conn->is_open() && !stopping_;
}

asio::awaitable<void> supervisor::loop(std::shared_ptr<supervisor> self) {
    const auto& o = ctx_->opts;
    const auto& log = ctx_->log;
    const std::string where = describe(o);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    unsigned attempt = 0;
    std::uint64_t failures_in_row = 0;
    bool was_connected_or_failed = false;
    while (!stopping_) {
        auto [ep, opened] = co_await asio::co_spawn(
            ex_, connection::open(ex_, ctx_),
            asio::bind_cancellation_slot(stop_->signal.slot(), use_nothrow));
        if (ep) {
            // Only bad_alloc or a bug: counted and retried like any failed attempt.
            opened = make_error_code(error::connection_lost);
            log->error("redis {} connect attempt threw", role_);
        }
        if (stopping_) {
            if (opened) {
                (*opened)->close(error::shutting_down);
            }
            break;
        }
        if (opened) {
            conn_ = std::move(*opened);
            if (was_connected_or_failed) {
                reconnects_.fetch_add(1, std::memory_order_relaxed);
                on_reconnect();
            }
            log->info("redis {} connected to {}", role_, where);
            attempt = 0;
            failures_in_row = 0;
            set_up(up_when_open_);
            co_await run_session(conn_);
            set_up(false);
            if (conn_->is_open()) {
                conn_->close(error::connection_lost);
            }
            const auto reason = conn_->close_reason();
            conn_.reset();
            was_connected_or_failed = true;
            if (stopping_) {
                break;
            }
            log->warn("redis {} connection to {} lost: {}; reconnecting", role_, where,
                      reason.message());
        } else {
            connect_failures_.fetch_add(1, std::memory_order_relaxed);
            on_connect_failure();
            was_connected_or_failed = true;
            ++failures_in_row;
            // The first failure and every tenth at warn; a long outage must not flood logs.
            const auto level =
                failures_in_row % 10 == 1 ? spdlog::level::warn : spdlog::level::debug;
            log->log(level, "redis {} cannot connect to {}: {} (attempt {})", role_, where,
                     opened.error().message(), failures_in_row);
        }
        backoff_.expires_after(
            backoff_delay(attempt, o.reconnect_min, o.reconnect_max, unit(rng_)));
        attempt = std::min(attempt + 1, 32U);
        co_await backoff_.async_wait(use_nothrow);
    }
    set_up(false);
    (void)self;
}

}  // namespace detail
}  // namespace imagegate::redis
