// A reserved upstream call slot, or the refusal of one: what a caller waits on (one timer,
// woken once at its slot), spends or gives back. Gates fill it in; waiting is the same for all.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/core/time_source.hpp"
#include "gateway/metrics/registry.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace imagegate::admission {

using clock = std::chrono::steady_clock;

/// Why a call was refused: the `reason` label of the refusal metric, the access log's and the
/// `Cache-Status` detail of the 429.
enum class refusal : std::uint8_t {
    none,              ///< granted
    queue_full,        ///< no slot within the caller's queue cap (shield.max_queue_wait)
    held,              ///< a slot is held for this key, not due within the queue cap: the
                       ///< client came back before its Retry-After
    paused,            ///< the upstream's 429 (or a low `Ratelimit`) pause runs
    reserve,           ///< a background refresh found only the foreground reserve left
    credentials_full,  ///< passthrough: the table of credentials that must be kept is full
    unproven,          ///< passthrough: the shared budget of unproven credentials has no slot
};

inline constexpr refusal all_refusals[] = {refusal::queue_full,       refusal::held,
                                           refusal::paused,           refusal::reserve,
                                           refusal::credentials_full, refusal::unproven};

std::string_view to_string(refusal r) noexcept;

/// Counters and gauges every gate keeps the same way. Owned (shared) by the gate and its
/// tickets; relaxed atomics, safe from any thread.
struct gate_stats {
    std::atomic<std::uint64_t> granted_now{0};     ///< slots granted for at once
    std::atomic<std::uint64_t> granted_queued{0};  ///< slots granted for later (queued)
    std::atomic<std::uint64_t> granted_held{0};    ///< held slots claimed by their key
    /// Refusals by `refusal` (index = enumerator value).
    std::array<std::atomic<std::uint64_t>, 7> refused{};
    std::atomic<std::int64_t> waiting{0};     ///< tickets waiting for a future slot now
    std::atomic<std::uint64_t> released{0};   ///< grants given back unspent
    std::atomic<std::uint64_t> abandoned{0};  ///< waits ended because every client left
    /// From grant to slot, for every granted call that waited or went at once.
    metrics::histogram queue_wait{{1'000, 5'000, 10'000, 50'000, 100'000, 250'000, 500'000,
                                   1'000'000, 2'000'000, 5'000'000, 10'000'000, 30'000'000}};

    void count(refusal r) noexcept {
        refused[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
    }
};

/// Appends the metrics of `s` (reservations, refusals by reason, queue depth and wait).
void render_stats(std::string& out, const gate_stats& s);

namespace detail {

/// What a ticket shares with the gate that granted it. The gate's part (spend, give back) is
/// virtual; the waiting part is common.
/// Thread-safety: slot and flags are guarded by `mu_`; the timer is touched only on the
/// waiter's executor, which must be single-threaded or a strand (the fetch executor is).
class ticket_state {
public:
    /// `slot` is on `time` (the gate's clock); the waiter's timer converts it.
    ticket_state(clock::time_point slot, std::shared_ptr<gate_stats> stats,
                 const time_source& time = time_source::real());
    virtual ~ticket_state() = default;
    ticket_state(const ticket_state&) = delete;
    ticket_state& operator=(const ticket_state&) = delete;

    clock::time_point slot() const;
    /// The gate moved the grant to an earlier slot (one freed ahead of it): a waiting owner
    /// re-arms its one timer. Any thread.
    void move_to(clock::time_point slot);
    /// Makes a pending or later wait end with false. Any thread.
    void abandon();
    /// Undoes abandon() when it came to nothing (someone joined meanwhile).
    void resume();

    /// The call went out: the slot is spent. Called once.
    virtual void on_commit() = 0;
    /// The grant will not be used: give it back. Called once.
    virtual void on_release() = 0;

    const std::shared_ptr<gate_stats>& stats() const noexcept { return stats_; }

private:
    friend asio::awaitable<bool> wait_for_slot(std::shared_ptr<ticket_state> st);
    /// Cancels the waiter's timer on its own executor; requires mu_ held.
    void wake_locked();

    const std::shared_ptr<gate_stats> stats_;
    const time_source& time_;
    const clock::time_point granted_at_;
    mutable std::mutex mu_;
    clock::time_point slot_;                          // guarded by mu_
    bool abandoned_ = false;                          // guarded by mu_
    std::optional<asio::any_io_executor> waiter_ex_;  // guarded by mu_
    std::shared_ptr<asio::steady_timer> timer_;       // created once, under mu_
};

/// Waits until the slot of `st` (true) or until it is abandoned (false).
asio::awaitable<bool> wait_for_slot(std::shared_ptr<ticket_state> st);

}  // namespace detail

/// A gate's answer for one upstream call. Move-only; a granted ticket that is neither
/// committed nor released gives its slot back when destroyed.
/// Thread-safety: one ticket is used by one coroutine; `abandoner()` may be called anywhere.
class ticket {
public:
    ticket() = default;
    /// A refusal: why, and how long until a slot would exist (the held slot when `held`).
    ticket(refusal why, clock::duration wait, bool held) noexcept;
    /// A grant; `from_hold`: the slot was held for this key.
    ticket(std::shared_ptr<detail::ticket_state> st, bool from_hold) noexcept;
    ticket(ticket&& o) noexcept;
    ticket& operator=(ticket&& o) noexcept;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket();

    bool granted() const noexcept { return st_ != nullptr; }
    refusal reason() const noexcept { return reason_; }
    /// Refused: how long until a slot exists for this caller. Granted: zero.
    clock::duration retry_wait() const noexcept { return wait_; }
    /// Refused while a slot is held for the key, or granted on one.
    bool held() const noexcept { return held_; }
    /// Granted: when the call may go (<= now: at once; may move earlier while waiting).
    clock::time_point slot() const;

    /// Granted only: waits on the caller's executor until the slot (true), or until
    /// `abandoner()` was called (false). One timer, re-armed only if the slot moves earlier.
    asio::awaitable<bool> wait();
    /// Abandons the wait from any thread; keeps only a weak reference (a flight's hook).
    std::function<void()> abandoner() const;
    /// A later wait() waits again (the abandonment came to nothing).
    void resume();
    /// The call goes upstream now: its token is spent.
    void commit();
    /// The call will not go: the token is given back (or its slot handed on).
    void release();
    /// release() because every client of the call left while it waited (counted apart).
    void release_abandoned();

private:
    std::shared_ptr<detail::ticket_state> st_;
    refusal reason_ = refusal::none;
    clock::duration wait_{};
    bool held_ = false;
    bool done_ = false;  // committed or released
};

}  // namespace imagegate::admission
