#include "gateway/shield/budget.hpp"

#include <algorithm>
#include <limits>
#include <ostream>
#include <stdexcept>

namespace imagegate::shield {

namespace {

using rep = duration::rep;
constexpr auto relaxed = std::memory_order_relaxed;

/// ceil(window / budget) in clock ticks, after validating what the constructor relies on.
duration refill_interval(const budget_options& o) {
    if (o.budget == 0 || o.burst == 0 || o.window <= std::chrono::milliseconds::zero()) {
        throw std::invalid_argument("shield budget: budget, window and burst must be positive");
    }
    if (o.background_reserve_percent >= 100) {
        throw std::invalid_argument("shield budget: background reserve must be below 100%");
    }
    if (o.window > std::chrono::duration_cast<std::chrono::milliseconds>(duration::max())) {
        throw std::invalid_argument("shield budget: window out of range");
    }
    if (o.hold_horizon < duration::zero() || o.hold_grace < duration::zero()) {
        throw std::invalid_argument("shield budget: hold horizon and grace must not be negative");
    }
    const auto window =
        static_cast<std::uint64_t>(std::chrono::duration_cast<duration>(o.window).count());
    const std::uint64_t ticks = window / o.budget + (window % o.budget != 0 ? 1 : 0);
    // burst * interval is how far the schedule can run ahead of now: it must fit the clock.
    if (o.burst > static_cast<std::uint64_t>(std::numeric_limits<rep>::max()) / ticks) {
        throw std::invalid_argument("shield budget: burst * window / budget out of range");
    }
    return duration(static_cast<rep>(ticks));
}

/// floor(burst * percent / 100) without overflowing for any burst.
std::uint64_t reserve_tokens(const budget_options& o) {
    const std::uint64_t p = o.background_reserve_percent;
    return o.burst / 100 * p + o.burst % 100 * p / 100;
}

}  // namespace

budget::sizes::sizes(const budget_options& o)
    : options(o),
      interval(refill_interval(o)),
      reserve(reserve_tokens(o)),
      foreground_tolerance(interval * static_cast<rep>(o.burst - 1)),
      // reserve <= burst - 1 because the percentage is below 100, so this is never negative.
      background_tolerance(interval * static_cast<rep>(o.burst - 1 - reserve)) {}

budget::budget(const budget_options& options) : sizes_(options) {}

void budget::resize(const budget_options& options, time_point now) {
    const sizes next(options);  // validates before anything changes
    const std::lock_guard lock(mutex_);
    // Same interval (only the burst changed): the schedule is already in the right unit.
    if (tat_ > now && next.interval != sizes_.interval) {
        const rep ahead = (tat_ - now).count();
        const rep old_interval = sizes_.interval.count();
        const rep calls = ahead / old_interval + (ahead % old_interval != 0 ? 1 : 0);
        // Saturates far beyond any wait a caller accepts instead of overflowing the clock.
        const rep cap = std::numeric_limits<rep>::max() / 4;
        const rep interval = next.interval.count();
        tat_ = now + duration(calls > cap / interval ? cap : calls * interval);
    }
    sizes_ = next;
}

void budget::drain(time_point now) {
    const std::lock_guard lock(mutex_);
    const time_point empty = now + sizes_.interval * static_cast<rep>(sizes_.options.burst);
    tat_ = std::max(tat_, empty);
}

budget_options budget::options() const {
    const std::lock_guard lock(mutex_);
    return sizes_.options;
}

duration budget::interval() const {
    const std::lock_guard lock(mutex_);
    return sizes_.interval;
}

std::uint64_t budget::reserve() const {
    const std::lock_guard lock(mutex_);
    return sizes_.reserve;
}

duration budget::tolerance(priority p) const noexcept {
    return p == priority::foreground ? sizes_.foreground_tolerance : sizes_.background_tolerance;
}

duration budget::wait_locked(time_point now, priority p) const noexcept {
    // max() first: tat_ starts at time_point::min(), and tat_ - now must not overflow.
    const duration ahead = std::max(tat_, now) - now;
    const duration tol = tolerance(p);
    return ahead > tol ? ahead - tol : duration::zero();
}

std::uint64_t budget::track_locked(time_point slot, slot_kind kind, std::uint64_t key) {
    const std::uint64_t id = next_id_++;
    slots_[slot] = slot_record{id, kind, key};
    by_id_[id] = slot;
    if (kind == slot_kind::held) {
        holds_[key] = slot;
    }
    return id;
}

void budget::erase_locked(std::map<time_point, slot_record>::iterator it) {
    switch (it->second.kind) {
    case slot_kind::granted: by_id_.erase(it->second.id); break;
    case slot_kind::held:
        by_id_.erase(it->second.id);
        holds_.erase(it->second.key);
        break;
    case slot_kind::vacant: vacant_.erase(it->first); break;
    }
    slots_.erase(it);
}

void budget::sweep_locked(time_point now) {
    // Entries are ordered by instant: only the front can be stale. Grants in the past stay
    // until their owner commits or releases them (it is about to).
    for (auto it = slots_.begin(); it != slots_.end() && it->first < now;) {
        const auto next = std::next(it);
        if (it->second.kind == slot_kind::vacant) {
            wasted_.fetch_add(1, relaxed);
            erase_locked(it);
        } else if (it->second.kind == slot_kind::held &&
                   it->first + sizes_.options.hold_grace < now) {
            holds_expired_.fetch_add(1, relaxed);
            erase_locked(it);
        }
        it = next;
    }
}

bool budget::give_back_locked(time_point slot) {
    // Only the last slot handed out can return to the bucket: every later grant was placed
    // one interval after it. Vacant slots right before it follow it back.
    if (tat_ != slot + sizes_.foreground_tolerance + sizes_.interval) {
        return false;
    }
    tat_ -= sizes_.interval;
    while (!slots_.empty()) {
        const auto last = std::prev(slots_.end());
        if (last->second.kind != slot_kind::vacant ||
            tat_ != last->first + sizes_.foreground_tolerance + sizes_.interval) {
            break;
        }
        erase_locked(last);
        tat_ -= sizes_.interval;
    }
    return true;
}

reservation budget::reserve(const reserve_args& a) {
    const std::lock_guard lock(mutex_);
    sweep_locked(a.now);
    const bool foreground = a.prio == priority::foreground;
    if (foreground && a.key != 0) {
        if (const auto h = holds_.find(a.key); h != holds_.end()) {
            const time_point held = h->second;
            if (held - a.now > a.max_wait) {
                // Came back early: the same truthful answer again, nothing new reserved.
                refused_foreground_.fetch_add(1, relaxed);
                return {.granted = false, .slot = held, .held = true};
            }
            auto& rec = slots_.at(held);
            holds_.erase(h);
            rec.kind = slot_kind::granted;
            granted_.fetch_add(1, relaxed);
            holds_claimed_.fetch_add(1, relaxed);
            return {.granted = true, .slot = held, .held = true, .id = rec.id};
        }
    }
    const duration wait = wait_locked(a.now, a.prio);
    if (wait == duration::zero()) {
        // An idle spell does not bank more than a full bucket: the schedule restarts at now.
        tat_ = std::max(tat_, a.now) + sizes_.interval;
        granted_.fetch_add(1, relaxed);
        return {.granted = true, .slot = a.now, .tat_after = tat_};
    }
    if (!foreground) {
        refused_background_.fetch_add(1, relaxed);
        return {.granted = false, .slot = a.now + wait};
    }
    // A slot someone gave up comes first: it is earlier than the end of the schedule.
    if (const auto v = vacant_.lower_bound(a.now); v != vacant_.end() && *v - a.now <= a.max_wait) {
        const time_point slot = *v;
        vacant_.erase(v);
        slots_.erase(slot);
        granted_.fetch_add(1, relaxed);
        queued_.fetch_add(1, relaxed);
        return {.granted = true, .slot = slot, .id = track_locked(slot, slot_kind::granted, 0)};
    }
    const time_point slot = a.now + wait;
    if (wait <= a.max_wait) {
        tat_ += sizes_.interval;
        granted_.fetch_add(1, relaxed);
        queued_.fetch_add(1, relaxed);
        return {.granted = true, .slot = slot, .id = track_locked(slot, slot_kind::granted, 0)};
    }
    refused_foreground_.fetch_add(1, relaxed);
    if (a.key == 0 || holds_.size() >= sizes_.options.max_holds ||
        wait > sizes_.options.hold_horizon) {
        return {.granted = false, .slot = slot};
    }
    tat_ += sizes_.interval;
    holds_made_.fetch_add(1, relaxed);
    return {.granted = false,
            .slot = slot,
            .held = true,
            .id = track_locked(slot, slot_kind::held, a.key)};
}

void budget::commit(const reservation& r) {
    if (r.id == 0) {
        return;
    }
    const std::lock_guard lock(mutex_);
    if (const auto it = by_id_.find(r.id); it != by_id_.end()) {
        erase_locked(slots_.find(it->second));
    }
}

release_result budget::release(const reservation& r, time_point now) {
    if (!r.granted && !r.held) {
        return {};
    }
    const std::lock_guard lock(mutex_);
    if (r.id == 0) {
        // A grant at once, never tracked: back to the bucket only if nothing came after it.
        if (tat_ == r.tat_after) {
            tat_ -= sizes_.interval;
            given_back_.fetch_add(1, relaxed);
            return {.given_back = true};
        }
        wasted_.fetch_add(1, relaxed);
        return {};
    }
    const auto id_it = by_id_.find(r.id);
    if (id_it == by_id_.end()) {
        return {};  // already committed, released or expired
    }
    const time_point slot = id_it->second;
    erase_locked(slots_.find(slot));
    if (give_back_locked(slot)) {
        given_back_.fetch_add(1, relaxed);
        return {.given_back = true};
    }
    if (slot < now) {
        wasted_.fetch_add(1, relaxed);
        return {};
    }
    // Hand the slot to the latest queued grant behind it: one owner re-arms one timer, and
    // the slot it leaves is the one most likely to go back to the bucket.
    for (auto it = slots_.rbegin(); it != slots_.rend() && it->first > slot; ++it) {
        if (it->second.kind != slot_kind::granted) {
            continue;
        }
        const std::uint64_t id = it->second.id;
        const time_point left = it->first;
        erase_locked(std::next(it).base());
        slots_[slot] = slot_record{id, slot_kind::granted, 0};
        by_id_[id] = slot;
        handed_on_.fetch_add(1, relaxed);
        if (!give_back_locked(left)) {
            slots_[left] = slot_record{0, slot_kind::vacant, 0};
            vacant_.insert(left);
        }
        return {.moved_id = id, .moved_to = slot};
    }
    slots_[slot] = slot_record{0, slot_kind::vacant, 0};
    vacant_.insert(slot);
    return {};
}

acquire_result budget::try_acquire(time_point now, priority p) {
    const auto r = reserve({.now = now, .prio = p, .max_wait = duration::zero(), .key = 0});
    if (r.granted) {
        commit(r);  // a vacant slot at exactly `now` comes back tracked
        return {.granted = true, .wait = duration::zero()};
    }
    return {.granted = false, .wait = r.slot - now};
}

time_point budget::next_available(time_point now, priority p) const noexcept {
    const std::lock_guard lock(mutex_);
    return now + wait_locked(now, p);
}

double budget::tokens(time_point now) const noexcept {
    duration ahead;
    double burst = 0;
    double interval = 1;
    {
        const std::lock_guard lock(mutex_);
        ahead = std::max(tat_, now) - now;
        burst = static_cast<double>(sizes_.options.burst);
        interval = static_cast<double>(sizes_.interval.count());
    }
    const double used = static_cast<double>(ahead.count()) / interval;
    // A caller whose `now` lags another thread's can see the schedule more than a bucket ahead.
    return std::clamp(burst - used, 0.0, burst);
}

time_point budget::full_at() const noexcept {
    const std::lock_guard lock(mutex_);
    return tat_;
}

std::size_t budget::queued(time_point now) const {
    const std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (auto it = slots_.upper_bound(now); it != slots_.end(); ++it) {
        n += it->second.kind == slot_kind::granted ? 1 : 0;
    }
    return n;
}

std::size_t budget::holds() const {
    const std::lock_guard lock(mutex_);
    return holds_.size();
}

budget_counters budget::counters() const noexcept {
    return {.granted = granted_.load(relaxed),
            .refused_foreground = refused_foreground_.load(relaxed),
            .refused_background = refused_background_.load(relaxed),
            .queued = queued_.load(relaxed),
            .holds = holds_made_.load(relaxed),
            .holds_claimed = holds_claimed_.load(relaxed),
            .holds_expired = holds_expired_.load(relaxed),
            .given_back = given_back_.load(relaxed),
            .handed_on = handed_on_.load(relaxed),
            .wasted = wasted_.load(relaxed)};
}

std::ostream& operator<<(std::ostream& os, priority p) {
    switch (p) {
    case priority::foreground: return os << "foreground";
    case priority::background: return os << "background";
    }
    return os << "priority(" << static_cast<int>(p) << ")";
}

std::ostream& operator<<(std::ostream& os, const acquire_result& r) {
    return os << (r.granted ? "{granted" : "{refused") << " wait=" << r.wait.count() << "ns}";
}

std::ostream& operator<<(std::ostream& os, const reservation& r) {
    return os << (r.granted ? "{granted" : "{refused") << (r.held ? " held" : "")
              << " slot=" << r.slot.time_since_epoch().count() << "ns id=" << r.id << "}";
}

std::ostream& operator<<(std::ostream& os, const release_result& r) {
    return os << "{moved_id=" << r.moved_id << " to=" << r.moved_to.time_since_epoch().count()
              << "ns given_back=" << r.given_back << "}";
}

std::ostream& operator<<(std::ostream& os, const budget_counters& c) {
    return os << "{granted=" << c.granted << " refused_foreground=" << c.refused_foreground
              << " refused_background=" << c.refused_background << " queued=" << c.queued
              << " holds=" << c.holds << " claimed=" << c.holds_claimed
              << " expired=" << c.holds_expired << " given_back=" << c.given_back
              << " handed_on=" << c.handed_on << " wasted=" << c.wasted << "}";
}

}  // namespace imagegate::shield
