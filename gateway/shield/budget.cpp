#include "gateway/shield/budget.hpp"

#include <algorithm>
#include <limits>
#include <ostream>
#include <stdexcept>

namespace imagegate::shield {

namespace {

using rep = duration::rep;

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

budget::budget(const budget_options& options)
    : options_(options),
      interval_(refill_interval(options)),
      reserve_(reserve_tokens(options)),
      foreground_tolerance_(interval_ * static_cast<rep>(options.burst - 1)),
      // reserve_ <= burst - 1 because the percentage is below 100, so this is never negative.
      background_tolerance_(interval_ * static_cast<rep>(options.burst - 1 - reserve_)) {}

duration budget::tolerance(priority p) const noexcept {
    return p == priority::foreground ? foreground_tolerance_ : background_tolerance_;
}

duration budget::wait_locked(time_point now, priority p) const noexcept {
    // max() first: tat_ starts at time_point::min(), and tat_ - now must not overflow.
    const duration ahead = std::max(tat_, now) - now;
    const duration tol = tolerance(p);
    return ahead > tol ? ahead - tol : duration::zero();
}

acquire_result budget::try_acquire(time_point now, priority p) noexcept {
    duration wait;
    {
        const std::lock_guard lock(mutex_);
        wait = wait_locked(now, p);
        if (wait == duration::zero()) {
            // An idle spell does not bank more than a full bucket: the schedule restarts at now.
            tat_ = std::max(tat_, now) + interval_;
        }
    }
    if (wait == duration::zero()) {
        granted_.fetch_add(1, std::memory_order_relaxed);
        return {.granted = true, .wait = duration::zero()};
    }
    auto& refused = p == priority::foreground ? refused_foreground_ : refused_background_;
    refused.fetch_add(1, std::memory_order_relaxed);
    return {.granted = false, .wait = wait};
}

time_point budget::next_available(time_point now, priority p) const noexcept {
    const std::lock_guard lock(mutex_);
    return now + wait_locked(now, p);
}

double budget::tokens(time_point now) const noexcept {
    duration ahead;
    {
        const std::lock_guard lock(mutex_);
        ahead = std::max(tat_, now) - now;
    }
    const double burst = static_cast<double>(options_.burst);
    const double used = static_cast<double>(ahead.count()) / static_cast<double>(interval_.count());
    // A caller whose `now` lags another thread's can see the schedule more than a bucket ahead.
    return std::clamp(burst - used, 0.0, burst);
}

budget_counters budget::counters() const noexcept {
    return {.granted = granted_.load(std::memory_order_relaxed),
            .refused_foreground = refused_foreground_.load(std::memory_order_relaxed),
            .refused_background = refused_background_.load(std::memory_order_relaxed)};
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

std::ostream& operator<<(std::ostream& os, const budget_counters& c) {
    return os << "{granted=" << c.granted << " refused_foreground=" << c.refused_foreground
              << " refused_background=" << c.refused_background << "}";
}

}  // namespace imagegate::shield
