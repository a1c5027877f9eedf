// The upstream request budget of one credential: decides from an injected time whether an
// upstream call may go now and, if not, exactly how long until it may (GCRA, a token bucket
// kept as one time stamp).
#pragma once

#include "gateway/shield/time.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <mutex>

namespace imagegate::shield {

/// Sizes of the budget; the composition root fills it from `config::shield_settings`.
struct budget_options {
    /// Upstream calls allowed per `window` in steady state (Cloudflare allows 1200 / 5 min;
    /// the default leaves room for the dashboard and other tools that share the token).
    std::uint64_t budget = 1000;
    /// The window `budget` is spread over.
    std::chrono::milliseconds window = std::chrono::minutes(5);
    /// Bucket capacity: calls that may go back to back after an idle spell.
    std::uint64_t burst = 50;
    /// Share of `burst` (percent, 0–99) kept for foreground misses: a background refresh is
    /// granted only if at least `burst * background_reserve_percent / 100` tokens (rounded
    /// down) are still left after it takes its own. At the defaults: 10 of 50.
    std::uint64_t background_reserve_percent = 20;
};

/// Who is asking for an upstream call; decides whether the reserve may be spent.
enum class priority {
    foreground,  ///< a client waits for this miss: may take the last token
    background,  ///< a stale-while-revalidate refresh: its client already had the stale copy,
                 ///< so it yields whenever the bucket is down to the reserve
};

/// The answer of `budget::try_acquire`.
struct acquire_result {
    /// A token was taken: the caller may send one upstream request now.
    bool granted = false;
    /// Refused only: the exact time until a token for the same priority exists (assuming no
    /// other caller takes it first). Zero when granted. Feed it to `retry_after_seconds`.
    duration wait{};

    friend bool operator==(const acquire_result&, const acquire_result&) = default;
};

/// Monotonic counters of one budget (each read with relaxed ordering; not a consistent
/// snapshot across fields, which metrics do not need).
struct budget_counters {
    std::uint64_t granted = 0;             ///< tokens handed out, both priorities
    std::uint64_t refused_foreground = 0;  ///< foreground calls refused (client got a wait)
    std::uint64_t refused_background = 0;  ///< background refreshes refused (reserve or empty)

    friend bool operator==(const budget_counters&, const budget_counters&) = default;
};

std::ostream& operator<<(std::ostream& os, priority p);
std::ostream& operator<<(std::ostream& os, const acquire_result& r);
std::ostream& operator<<(std::ostream& os, const budget_counters& c);

/// One upstream credential's request budget.
///
/// Why GCRA rather than a counted token bucket: the whole state is one time stamp, the
/// theoretical arrival time `tat_` of the next call if calls went out exactly at the refill
/// rate. It is the same admission rule as a bucket of `burst` tokens refilled at `budget` per
/// `window` (tokens = burst - (tat - now) / interval), but it needs no refill step, no
/// floating point, and the wait for a refused call falls out as a subtraction, exact to the
/// nanosecond. The refill interval is `ceil(window / budget)`, so rounding can only make
/// the budget slower, never faster. The guarantee the shield exists for: over ANY interval of
/// length T, grants <= burst + T / interval <= burst + budget * T / window. At the defaults
/// that is at most 1050 calls in any 5 minutes, under Cloudflare's 1200.
///
/// Time that goes backwards (a thread that read the clock before another one took the lock)
/// never creates tokens: the schedule only moves forward, so such a caller is at worst
/// refused a little early.
///
/// Owned by the composition root, one per upstream credential, shared by every session that
/// fetches with that credential. Thread-safe: every member may be called concurrently; each
/// call holds `mutex_` for a few arithmetic operations and never blocks otherwise.
class budget {
public:
    /// Throws std::invalid_argument if budget, window or burst is zero, the reserve is 100%
    /// or more, or burst * interval would not fit the clock's range (never for values that
    /// pass config::check, which has burst <= budget and window <= 1 day).
    explicit budget(const budget_options& options);

    budget(const budget&) = delete;
    budget& operator=(const budget&) = delete;

    /// Takes a token for one upstream call at `now` if one exists for priority `p`.
    acquire_result try_acquire(time_point now, priority p) noexcept;

    /// The earliest time at which `try_acquire(t, p)` would grant, assuming nobody else takes
    /// a token before: `now` itself when a token exists. The caller waits (bounded by its
    /// own deadline) and calls `try_acquire` again, which may still refuse if it lost a race.
    time_point next_available(time_point now, priority p) const noexcept;

    /// Tokens in the bucket at `now` (0..burst, fractional while refilling), for a gauge.
    double tokens(time_point now) const noexcept;

    budget_counters counters() const noexcept;

    const budget_options& options() const noexcept { return options_; }
    /// The refill period of one token: ceil(window / budget) (300 ms at the defaults).
    duration interval() const noexcept { return interval_; }
    /// Tokens a background refresh must leave in the bucket (10 at the defaults).
    std::uint64_t reserve() const noexcept { return reserve_; }

private:
    /// How far `tat_` may run ahead of `now` for a call of priority `p` to be granted.
    duration tolerance(priority p) const noexcept;
    /// Time from `now` until a call of priority `p` conforms; zero if it conforms now.
    /// Requires mutex_ held.
    duration wait_locked(time_point now, priority p) const noexcept;

    const budget_options options_;
    const duration interval_;
    const std::uint64_t reserve_;
    /// (burst - 1) * interval_: a full bucket lets `burst` calls go at the same instant.
    const duration foreground_tolerance_;
    /// (burst - 1 - reserve_) * interval_: a background call leaves `reserve_` tokens behind.
    const duration background_tolerance_;

    mutable std::mutex mutex_;
    /// Theoretical arrival time of the next call at the refill rate; min() = full bucket.
    time_point tat_ = time_point::min();  // guarded by mutex_

    std::atomic<std::uint64_t> granted_{0};
    std::atomic<std::uint64_t> refused_foreground_{0};
    std::atomic<std::uint64_t> refused_background_{0};
};

}  // namespace imagegate::shield
