// The upstream request budget of one credential: a GCRA schedule of upstream call slots handed
// out in arrival order from an injected time — now, later (a queued slot), or refused with the
// exact wait, holding the refused key's slot when it is near — and given back when unused.
#pragma once

#include "gateway/shield/time.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

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
    /// Slots held at once for refused keys (0: never hold; the shared budget of unproven
    /// passthrough credentials holds none, so made-up credentials cannot park tokens).
    std::size_t max_holds = 1024;
    /// A refused key gets a held slot only if that slot is at most this far ahead: the
    /// Python and Go SDKs ignore a `Retry-After` of 60 s or more and would never come back
    /// for a slot held beyond it.
    duration hold_horizon = std::chrono::seconds(60);
    /// How long after its instant a held slot still waits for its key (a client a little
    /// late on the network); past it the slot is gone unused.
    duration hold_grace = std::chrono::milliseconds(500);
};

/// Who is asking for an upstream call; decides whether the reserve may be spent.
enum class priority {
    foreground,  ///< a client waits for this miss: may take the last token, may queue
    background,  ///< a stale-while-revalidate refresh: its client already had the stale copy,
                 ///< so it yields whenever the bucket is down to the reserve, and never queues
};

/// What a caller asks `budget::reserve` for.
struct reserve_args {
    time_point now{};
    priority prio = priority::foreground;
    /// Foreground: the longest the caller waits for its slot (0: now or refused). A
    /// background call takes a token now or not at all, whatever this says.
    duration max_wait{};
    /// Foreground: a hash of what the call fetches. A refusal holds the slot for this key, and
    /// the key's next reservation claims it. 0: no hold made or claimed.
    std::uint64_t key = 0;
};

/// The answer of `budget::reserve`. Pass it back unchanged to `commit` or `release`.
struct reservation {
    bool granted = false;
    /// Granted: when the call may go out (<= now: at once). Refused: the earliest instant a
    /// slot exists for this caller — the held slot when `held`, else the next free one if
    /// nobody else takes it first.
    time_point slot{};
    /// Granted on the slot held for this key, or refused while one is held for it at `slot`.
    bool held = false;
    /// Nonzero while the budget tracks the grant (a future or claimed slot) or the hold.
    std::uint64_t id = 0;
    /// The schedule just after an untracked grant: `release` gives the token back only if
    /// nothing was reserved after it.
    time_point tat_after{};

    friend bool operator==(const reservation&, const reservation&) = default;
};

/// What `budget::release` did with a slot that was not spent.
struct release_result {
    /// Nonzero: the latest queued grant moved into the released slot (one timer to re-arm,
    /// no herd); its owner now goes at `moved_to`.
    std::uint64_t moved_id = 0;
    time_point moved_to{};
    /// The token went back to the bucket (the slot was the last one handed out).
    bool given_back = false;

    friend bool operator==(const release_result&, const release_result&) = default;
};

/// The answer of `budget::try_acquire` (a reservation that never waits and never holds).
struct acquire_result {
    /// A token was taken: the caller may send one upstream request now.
    bool granted = false;
    /// Refused only: the exact time until a token for the same priority exists (assuming no
    /// other caller takes it first). Zero when granted.
    duration wait{};

    friend bool operator==(const acquire_result&, const acquire_result&) = default;
};

/// Monotonic counters of one budget (each read with relaxed ordering; not a consistent
/// snapshot across fields, which metrics do not need).
struct budget_counters {
    std::uint64_t granted = 0;             ///< tokens handed out, both priorities, any slot
    std::uint64_t refused_foreground = 0;  ///< foreground calls refused (client got a wait)
    std::uint64_t refused_background = 0;  ///< background refreshes refused (reserve or empty)
    std::uint64_t queued = 0;              ///< grants of a future slot (included in granted)
    std::uint64_t holds = 0;               ///< slots held for refused keys
    std::uint64_t holds_claimed = 0;       ///< held slots their key came back for
    std::uint64_t holds_expired = 0;       ///< held slots nobody came back for (tokens lost)
    std::uint64_t given_back = 0;          ///< unspent tokens returned to the bucket
    std::uint64_t handed_on = 0;           ///< unspent slots taken over by a later grant
    std::uint64_t wasted = 0;              ///< unspent slots in the past: lost

    friend bool operator==(const budget_counters&, const budget_counters&) = default;
};

std::ostream& operator<<(std::ostream& os, priority p);
std::ostream& operator<<(std::ostream& os, const acquire_result& r);
std::ostream& operator<<(std::ostream& os, const reservation& r);
std::ostream& operator<<(std::ostream& os, const release_result& r);
std::ostream& operator<<(std::ostream& os, const budget_counters& c);

/// One upstream credential's request budget.
///
/// Why GCRA rather than a counted token bucket: the whole admission state is one time stamp,
/// the theoretical arrival time `tat_` of the next call if calls went out exactly at the
/// refill rate. It is the same rule as a bucket of `burst` tokens refilled at `budget` per
/// `window` (tokens = burst - (tat - now) / interval), with no refill step, no floating
/// point, and the wait for a refused call falls out as a subtraction, exact to the
/// nanosecond. The refill interval is `ceil(window / budget)`, so rounding can only make the
/// budget slower, never faster.
///
/// Reservations instead of polling: a call that does not conform now gets the slot it would
/// conform at, `tat - tolerance`, and `tat` moves on by one interval, so the k-th waiter's
/// slot is `tat + k·interval`; it is woken once, at its slot. Each slot is where the same
/// call would have been granted had it arrived then, so the guarantee the shield exists for
/// still holds over the slots: over ANY interval of length T, at most
/// burst + T / interval <= burst + budget * T / window slots (1050 per 5 minutes at the
/// defaults, under Cloudflare's 1200). Only a held slot can be used after its instant, by at
/// most `hold_grace`, which can add hold_grace / interval calls to a window (2 at the
/// defaults).
///
/// A foreground call whose slot is further than its `max_wait` is refused at once with that
/// slot as its truthful `Retry-After`; when a key is given, the slot is held for that key
/// (within `hold_horizon`, at most `max_holds`), so a client that comes back then finds it.
/// Background calls never queue and never take the last `reserve()` tokens, queued slots
/// included.
///
/// An unspent grant is released: the last slot handed out goes back to the bucket; an
/// earlier one is handed to the latest queued grant behind it (its owner re-arms one timer),
/// or left vacant for the next arrival; a slot already in the past is lost.
///
/// Time that goes backwards (a thread that read the clock before another one took the lock)
/// never creates tokens: the schedule only moves forward, so such a caller is at worst
/// refused a little early.
///
/// A reload changes the sizes in place (resize()); the schedule's state carries over.
///
/// Owned by the composition root (or a credential's shield), shared by every session that
/// fetches with that credential. Thread-safe: every member may be called concurrently; each
/// call holds `mutex_` for a few map operations and never blocks otherwise.
class budget {
public:
    /// Throws std::invalid_argument if budget, window or burst is zero, the reserve is 100%
    /// or more, or burst * interval would not fit the clock's range (never for values that
    /// pass config::check, which has burst <= budget and window <= 1 day).
    explicit budget(const budget_options& options);

    budget(const budget&) = delete;
    budget& operator=(const budget&) = delete;

    /// Grants a slot (now or within `max_wait`), claims the slot held for `key`, or refuses.
    reservation reserve(const reserve_args& args);
    /// The call of `r` went out: its slot is spent. Untracked grants need no commit.
    void commit(const reservation& r);
    /// `r` will not be used: gives its token back, hands its slot on, or (refused and held)
    /// drops the hold. Idempotent per reservation.
    release_result release(const reservation& r, time_point now);

    /// Takes a token for one upstream call at `now` if one exists for priority `p`.
    acquire_result try_acquire(time_point now, priority p);

    /// The earliest time at which `try_acquire(t, p)` would grant, assuming nobody else takes
    /// a token before: `now` itself when a token exists.
    time_point next_available(time_point now, priority p) const noexcept;

    /// Tokens in the bucket at `now` (0..burst, fractional while refilling), for a gauge.
    double tokens(time_point now) const noexcept;
    /// The instant the bucket is full again if nobody calls; `min()` if it never was used.
    /// Queued and held slots count: they keep the bucket from refilling.
    time_point full_at() const noexcept;
    /// Grants of a future slot not yet committed or released, and slots held, at `now`.
    std::size_t queued(time_point now) const;
    std::size_t holds() const;

    budget_counters counters() const noexcept;

    /// Puts new sizes in effect at `now` (a configuration reload) without losing the state:
    /// the calls the schedule is ahead of `now` by, ceil((tat - now) / old interval), stay
    /// spent and are re-expressed in the new interval, so the bucket holds what it would
    /// hold had the new sizes been in effect for those calls. Keeping the raw `tat` instead
    /// would grant too much after a lowered budget (a longer interval covers the same
    /// `tat - now` with fewer calls) and refuse too long after a raised one. Slots already
    /// granted or held keep their instants; a smaller burst only shortens what the bucket
    /// can still grant. Throws std::invalid_argument like the constructor, changing nothing.
    void resize(const budget_options& options, time_point now);

    /// Empties the bucket at `now`: the schedule moves to where `burst` calls granted at
    /// `now` would have put it (never backwards), so the next token exists one interval
    /// later. Counts no grant; slots already granted or held keep their instants. For a
    /// budget that takes over from another one that may have granted its burst just before
    /// (the fleet budget's local fallback).
    void drain(time_point now);

    budget_options options() const;
    /// The refill period of one token: ceil(window / budget) (300 ms at the defaults).
    duration interval() const;
    /// Tokens a background refresh must leave in the bucket (10 at the defaults).
    std::uint64_t reserve() const;

private:
    enum class slot_kind : std::uint8_t { granted, held, vacant };
    struct slot_record {
        std::uint64_t id = 0;
        slot_kind kind = slot_kind::granted;
        std::uint64_t key = 0;  // held only
    };

    /// How far `tat_` may run ahead of `now` for a call of priority `p` to be granted.
    duration tolerance(priority p) const noexcept;
    /// Time from `now` until a call of priority `p` conforms; zero if it conforms now.
    duration wait_locked(time_point now, priority p) const noexcept;
    /// Drops held slots past their grace and vacant slots in the past.
    void sweep_locked(time_point now);
    /// Gives `slot` back if it was the last one handed out (then any vacant slots before
    /// it too). All *_locked members require mutex_ held.
    bool give_back_locked(time_point slot);
    void erase_locked(std::map<time_point, slot_record>::iterator it);
    std::uint64_t track_locked(time_point slot, slot_kind kind, std::uint64_t key);

    /// The sizes in effect and what follows from them; all guarded by mutex_ (resize()).
    struct sizes {
        explicit sizes(const budget_options& o);
        budget_options options;
        duration interval;
        std::uint64_t reserve;
        /// (burst - 1) * interval: a full bucket lets `burst` calls go at the same instant.
        duration foreground_tolerance;
        /// (burst - 1 - reserve) * interval: a background call leaves `reserve` tokens behind.
        duration background_tolerance;
    };

    mutable std::mutex mutex_;
    sizes sizes_;  // guarded by mutex_
    /// Theoretical arrival time of the next call at the refill rate; min() = full bucket.
    time_point tat_ = time_point::min();  // guarded by mutex_
    /// Tracked slots by instant: future and claimed grants until spent or released, holds,
    /// vacancies. Bounded by max_wait / interval grants per waiting caller plus max_holds.
    std::map<time_point, slot_record> slots_;              // guarded by mutex_
    std::unordered_map<std::uint64_t, time_point> by_id_;  // guarded by mutex_
    std::unordered_map<std::uint64_t, time_point> holds_;  // key -> slot; guarded by mutex_
    std::set<time_point> vacant_;                          // guarded by mutex_
    std::uint64_t next_id_ = 1;                            // guarded by mutex_

    std::atomic<std::uint64_t> granted_{0};
    std::atomic<std::uint64_t> refused_foreground_{0};
    std::atomic<std::uint64_t> refused_background_{0};
    std::atomic<std::uint64_t> queued_{0};
    std::atomic<std::uint64_t> holds_made_{0};
    std::atomic<std::uint64_t> holds_claimed_{0};
    std::atomic<std::uint64_t> holds_expired_{0};
    std::atomic<std::uint64_t> given_back_{0};
    std::atomic<std::uint64_t> handed_on_{0};
    std::atomic<std::uint64_t> wasted_{0};
};

}  // namespace imagegate::shield
