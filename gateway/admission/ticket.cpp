#include "gateway/admission/ticket.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include <utility>

namespace imagegate::admission {

std::string_view to_string(refusal r) noexcept {
    switch (r) {
    case refusal::none: return "none";
    case refusal::queue_full: return "queue_full";
    case refusal::held: return "held";
    case refusal::paused: return "paused";
    case refusal::reserve: return "reserve";
    case refusal::credentials_full: return "credentials_full";
    case refusal::unproven: return "unproven";
    }
    return "unknown";
}

void render_stats(std::string& out, const gate_stats& s) {
    using metrics::append_header;
    using metrics::append_sample;
    constexpr auto relaxed = std::memory_order_relaxed;
    append_header(out, "imagegate_budget_reservations_total", "counter",
                  "Upstream call slots granted: at once, queued for later, or a slot held for "
                  "the key claimed.");
    append_sample(out, "imagegate_budget_reservations_total", "", "", s.granted_now.load(relaxed),
                  "outcome=\"now\"");
    append_sample(out, "imagegate_budget_reservations_total", "", "",
                  s.granted_queued.load(relaxed), "outcome=\"queued\"");
    append_sample(out, "imagegate_budget_reservations_total", "", "", s.granted_held.load(relaxed),
                  "outcome=\"held\"");
    append_header(out, "imagegate_budget_refusals_total", "counter",
                  "Upstream calls refused at once (answered 429 with Retry-After), by reason.");
    for (const auto r : all_refusals) {
        std::string label = "reason=\"";
        label += to_string(r);
        label += '"';
        append_sample(out, "imagegate_budget_refusals_total", "", "",
                      s.refused[static_cast<std::size_t>(r)].load(relaxed), label);
    }
    const auto waiting = s.waiting.load(relaxed);
    append_sample(out, "imagegate_budget_queue_depth", "gauge",
                  "Upstream calls waiting for their reserved slot now.",
                  static_cast<std::uint64_t>(waiting < 0 ? 0 : waiting));
    s.queue_wait.render(out, "imagegate_budget_queue_wait_seconds",
                        "Time from a granted reservation to its slot.");
    append_sample(out, "imagegate_budget_released_total", "counter",
                  "Granted slots given back unspent (the call did not go).",
                  s.released.load(relaxed));
    append_sample(out, "imagegate_budget_abandoned_total", "counter",
                  "Queued calls that gave their slot back because every client left.",
                  s.abandoned.load(relaxed));
}

namespace detail {

ticket_state::ticket_state(clock::time_point slot, std::shared_ptr<gate_stats> stats,
                           const time_source& time)
    : stats_(std::move(stats)), time_(time), granted_at_(time.now()), slot_(slot) {}

clock::time_point ticket_state::slot() const {
    const std::lock_guard lock(mu_);
    return slot_;
}

void ticket_state::wake_locked() {
    // Posted, never run inline: the waiter reads the slot and arms the timer in one step on
    // its executor, so a cancel lands either before it reads (it then sees the new state) or
    // while the wait is pending (it wakes and reads again). Never lost, never early.
    if (waiter_ex_ && timer_) {
        asio::post(*waiter_ex_, [t = timer_] { t->cancel(); });
    }
}

void ticket_state::move_to(clock::time_point slot) {
    const std::lock_guard lock(mu_);
    if (slot >= slot_) {
        return;
    }
    slot_ = slot;
    wake_locked();
}

void ticket_state::abandon() {
    const std::lock_guard lock(mu_);
    abandoned_ = true;
    wake_locked();
}

void ticket_state::resume() {
    const std::lock_guard lock(mu_);
    abandoned_ = false;
}

asio::awaitable<bool> wait_for_slot(std::shared_ptr<ticket_state> st) {
    auto ex = co_await asio::this_coro::executor;
    std::shared_ptr<asio::steady_timer> timer;
    {
        const std::lock_guard lock(st->mu_);
        if (!st->timer_) {
            st->timer_ = std::make_shared<asio::steady_timer>(ex);
        }
        st->waiter_ex_ = ex;
        timer = st->timer_;
    }
    bool counted = false;
    bool ready = false;
    for (;;) {
        clock::time_point slot;
        {
            const std::lock_guard lock(st->mu_);
            if (st->abandoned_) {
                break;
            }
            slot = st->slot_;
        }
        if (slot <= st->time_.now()) {
            ready = true;
            break;
        }
        if (!counted) {
            st->stats_->waiting.fetch_add(1, std::memory_order_relaxed);
            counted = true;
        }
        timer->expires_at(st->time_.to_steady(slot));
        // One timer per waiter, fired once at its slot: no herd of wake-ups. A cancel means
        // the slot moved earlier or the wait was abandoned: the loop reads which.
        auto [ec] = co_await timer->async_wait(use_nothrow);
        (void)ec;
    }
    if (counted) {
        st->stats_->waiting.fetch_sub(1, std::memory_order_relaxed);
    }
    if (ready) {
        st->stats_->queue_wait.observe(st->time_.now() - st->granted_at_);
    }
    co_return ready;
}

}  // namespace detail

ticket::ticket(refusal why, clock::duration wait, bool held) noexcept
    : reason_(why), wait_(wait), held_(held) {}

ticket::ticket(std::shared_ptr<detail::ticket_state> st, bool from_hold) noexcept
    : st_(std::move(st)), held_(from_hold) {}

ticket::ticket(ticket&& o) noexcept
    : st_(std::move(o.st_)),
      reason_(o.reason_),
      wait_(o.wait_),
      held_(o.held_),
      done_(std::exchange(o.done_, true)) {}

ticket& ticket::operator=(ticket&& o) noexcept {
    if (this != &o) {
        release();
        st_ = std::move(o.st_);
        reason_ = o.reason_;
        wait_ = o.wait_;
        held_ = o.held_;
        done_ = std::exchange(o.done_, true);
    }
    return *this;
}

ticket::~ticket() { release(); }

clock::time_point ticket::slot() const { return st_ ? st_->slot() : clock::time_point{}; }

asio::awaitable<bool> ticket::wait() { return detail::wait_for_slot(st_); }

std::function<void()> ticket::abandoner() const {
    return [w = std::weak_ptr<detail::ticket_state>(st_)] {
        if (const auto s = w.lock()) {
            s->abandon();
        }
    };
}

void ticket::resume() {
    if (st_) {
        st_->resume();
    }
}

void ticket::commit() {
    if (st_ && !done_) {
        done_ = true;
        st_->on_commit();
    }
}

void ticket::release() {
    if (st_ && !done_) {
        done_ = true;
        st_->stats()->released.fetch_add(1, std::memory_order_relaxed);
        st_->on_release();
    }
}

void ticket::release_abandoned() {
    if (st_ && !done_) {
        st_->stats()->abandoned.fetch_add(1, std::memory_order_relaxed);
    }
    release();
}

}  // namespace imagegate::admission
