// Idle connections of an upstream pool: taking a lent connection back, parking it or
// handing its unit to another pool of the origin, evicting the oldest, closing what was
// readable while idle, and the reaper that closes connections idle too long.
#include "gateway/upstream/pool_impl.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <vector>

namespace imagegate::upstream {

namespace detail {

void pool_impl::discard_unreadable(slot& s) {
    const auto t =
        transition(s.state, slot_event::evicted, facts_for(s), {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action == slot_action::close);
    (void)t;  // only checked in debug builds
    stats_->unread_discards.fetch_add(1, std::memory_order_relaxed);
    close_and_erase(s.id);
    update_gauges();
}

bool pool_impl::evict_oldest_idle() {
    slot* oldest = nullptr;
    for (auto& s : slots_) {
        if (s.state == slot_state::idle &&
            (oldest == nullptr || s.idle_since < oldest->idle_since)) {
            oldest = &s;
        }
    }
    if (oldest == nullptr) {
        return false;
    }
    const auto t = transition(oldest->state, slot_event::evicted, facts_for(*oldest),
                              {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action == slot_action::close);
    (void)t;  // only checked in debug builds
    close_and_erase(oldest->id);
    return true;
}

void pool_impl::close_and_erase(std::uint64_t id) {
    auto it =
        std::find_if(slots_.begin(), slots_.end(), [id](const slot& s) { return s.id == id; });
    if (it == slots_.end()) {
        return;
    }
    // On the connection's worker (this one), and nobody else owns the stream any more; a
    // connect or exchange still suspended on it (shutdown) fails with operation_aborted.
    it->conn->close();
    slots_.erase(it);
    limit_->give_back(1);
}

// A connection with nobody waiting for it here: parked, unless another pool of the origin
// is short of room, which then gets the unit instead (the connection is closed).
void pool_impl::park_or_hand_over(slot& s) {
    s.state = slot_state::idle;
    if (const auto other = limit_->claim_for_other(member_)) {
        const auto t = transition(s.state, slot_event::evicted, facts_for(s),
                                  {opts_.max_requests_per_connection});
        BOOST_ASSERT(t.action == slot_action::close);
        (void)t;
        close_and_erase(s.id);
        limit_->wake(*other);
        return;
    }
    s.idle_since = clock::now();
    arm_reaper();
}

// Another pool of the origin is short of room: give it our idle connections' units.
void pool_impl::on_shed_request() {
    check_here();
    if (shutting_down_) {
        return;
    }
    while (count(slot_state::idle) > 0) {
        const auto other = limit_->claim_for_other(member_);
        if (!other) {
            break;
        }
        evict_oldest_idle();
        limit_->wake(*other);
    }
    update_gauges();
}

void pool_impl::arm_reaper() {
    if (shutting_down_) {
        return;
    }
    std::optional<clock::time_point> earliest;
    for (const auto& s : slots_) {
        if (s.state == slot_state::idle) {
            const auto at = s.idle_since + opts_.idle_timeout;
            if (!earliest || at < *earliest) {
                earliest = at;
            }
        }
    }
    if (!earliest || (reaper_at_ && *reaper_at_ <= *earliest)) {
        return;
    }
    reaper_at_ = earliest;
    reaper_.expires_at(*earliest);
    reaper_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (auto self = weak.lock()) {
            self->on_reap(ec);
        }
    });
}

void pool_impl::on_reap(boost::system::error_code ec) {
    // A cancelled wait means the reaper was re-armed earlier (or the pool shut down); the
    // newer wait owns reaper_at_.
    if (ec == asio::error::operation_aborted) {
        return;
    }
    check_here();
    reaper_at_.reset();
    const auto now = clock::now();
    std::vector<std::uint64_t> expired;
    for (auto& s : slots_) {
        if (s.state == slot_state::idle && s.idle_since + opts_.idle_timeout <= now) {
            expired.push_back(s.id);
        }
    }
    for (const auto id : expired) {
        slot* s = find(id);
        const auto t = transition(s->state, slot_event::idle_expired, facts_for(*s),
                                  {opts_.max_requests_per_connection});
        BOOST_ASSERT(t.action == slot_action::close);
        (void)t;
        close_and_erase(id);
        stats_->idle_closes.fetch_add(1, std::memory_order_relaxed);
    }
    update_gauges();
    arm_reaper();
    open_as_needed();
}

void pool_impl::on_release(std::uint64_t id, bool reusable) {
    check_here();
    slot* s = find(id);
    BOOST_ASSERT(s != nullptr);
    if (s == nullptr) {
        return;
    }
    const slot_limits limits{opts_.max_requests_per_connection};
    const auto facts = facts_for(*s);
    const auto t =
        transition(s->state, reusable ? slot_event::released_reusable : slot_event::released_broken,
                   facts, limits);
    BOOST_ASSERT(t.action != slot_action::invalid);
    switch (t.action) {
    case slot_action::hand_to_waiter:
        s->state = t.next;
        hand_to_first_waiter(*s, true);
        break;
    case slot_action::park: park_or_hand_over(*s); break;
    case slot_action::close:
        if (reusable && s->state == slot_state::in_use && limits.max_requests_per_connection != 0 &&
            facts.requests_served >= limits.max_requests_per_connection) {
            stats_->retired.fetch_add(1, std::memory_order_relaxed);
        }
        close_and_erase(id);
        break;
    default: break;
    }
    update_gauges();
    open_as_needed();
}

}  // namespace detail

}  // namespace imagegate::upstream
