// Acquiring a connection from an upstream pool: an idle one at once, else a place in the
// FIFO of waiters until a connection is handed over, the deadline passes or the pool shuts
// down.
#include "gateway/upstream/pool_impl.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>

namespace imagegate::upstream {

using namespace asio::experimental::awaitable_operators;

namespace detail {

std::optional<lease> pool_impl::take_idle() {
    if (shutting_down_) {
        return std::nullopt;
    }
    slot* best = nullptr;
    for (;;) {
        // Most recently parked first: it is the least likely to have been closed by the
        // peer, and the oldest ones age out through the reaper.
        best = nullptr;
        for (auto& s : slots_) {
            if (s.state == slot_state::idle &&
                (best == nullptr || s.idle_since >= best->idle_since)) {
                best = &s;
            }
        }
        if (best == nullptr) {
            return std::nullopt;
        }
        if (best->conn->is_idle_and_open()) {
            break;
        }
        // Bytes on an idle connection answer no request of ours (or are the peer's close):
        // read as the next request's answer they would cross answers. Discard, try the next.
        discard_unreadable(*best);
    }
    const auto t = transition(best->state, slot_event::acquired, facts_for(*best),
                              {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action == slot_action::lend);
    best->state = t.next;
    update_gauges();
    return lease(shared_from_this(), best->conn, best->id, true);
}

void pool_impl::hand_to_first_waiter(slot& s, bool reused) {
    BOOST_ASSERT(!waiters_.empty());
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    w->outcome.emplace(lease(shared_from_this(), s.conn, s.id, reused));
    w->wake.cancel();
}

void pool_impl::fail_first_waiter(boost::system::error_code ec) {
    if (waiters_.empty()) {
        return;
    }
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    w->outcome.emplace(ec);
    w->wake.cancel();
}

asio::awaitable<boost::system::result<lease>> pool_impl::acquire_wait(
    std::shared_ptr<pool_impl> self, clock::time_point deadline, acquire_mode mode) {
    deadline = std::min(deadline, clock::now() + self->opts_.acquire_timeout);
    if (self->shutting_down_) {
        co_return make_error_code(errc::shutting_down);
    }
    if (mode == acquire_mode::any) {
        auto idle = self->take_idle();
        if (idle) {
            co_return std::move(*idle);
        }
    } else if (self->limit_->taken() >= self->limit_->max()) {
        // A retry must not queue behind connections that are probably as stale as the one
        // that just failed: make room for a new one.
        self->evict_oldest_idle();
    }

    auto w = std::make_shared<waiter>(self->ex_, mode);
    self->stats_->acquire_waits.fetch_add(1, std::memory_order_relaxed);
    self->waiters_.push_back(w);
    self->open_as_needed();

    asio::steady_timer timer(self->ex_, deadline);
    auto fired = co_await (w->wake.async_wait(use_nothrow) || timer.async_wait(use_nothrow));
    (void)fired;
    if (w->outcome) {
        co_return std::move(*w->outcome);
    }
    // Waited out (or this coroutine was cancelled): leave the queue.
    auto& q = self->waiters_;
    q.erase(std::remove(q.begin(), q.end(), w), q.end());
    self->stats_->acquire_timeouts.fetch_add(1, std::memory_order_relaxed);
    self->open_as_needed();  // one waiter less: the shortfall told to the limit shrinks
    if (self->shutting_down_) {
        co_return make_error_code(errc::shutting_down);
    }
    // Nothing was lent and nothing can come back except from connects that are still
    // running: the wait was for the upstream to answer a connect, not for a busy pool.
    if (self->count(slot_state::in_use) == 0 && self->pending_connects_ > 0) {
        self->stats_->timeouts.fetch_add(1, std::memory_order_relaxed);
        co_return make_error_code(errc::upstream_timeout);
    }
    co_return make_error_code(errc::pool_exhausted);
}

}  // namespace detail

}  // namespace imagegate::upstream
