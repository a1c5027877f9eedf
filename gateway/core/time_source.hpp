// The gateway's clock for what its logic decides by time — cache freshness and stale windows,
// budget refills and reserved slots, upstream pauses, proofs, remembered failures — so tests
// move time by hand instead of sleeping. I/O deadlines (timers on sockets, the coalesce wait,
// the upstream exchange) stay on the steady clock itself.
#pragma once

#include <atomic>
#include <chrono>

namespace imagegate {

/// The steady clock plus an offset that only tests move (advance). Production never moves
/// it, so now() is steady_clock::now() and one relaxed load. Owned by the composition root
/// (gateway/runtime/app.cpp), shared by reference; every member may be called from any
/// thread. Time points of this clock are steady-clock time points, shifted: a timer that must
/// fire at one converts it with to_steady() first.
class time_source {
public:
    using clock = std::chrono::steady_clock;

    time_source() = default;
    time_source(const time_source&) = delete;
    time_source& operator=(const time_source&) = delete;

    clock::time_point now() const noexcept {
        return clock::now() + clock::duration(offset_.load(std::memory_order_relaxed));
    }

    /// Moves this clock `d` forward (tests only): entries age, budgets refill and pauses run
    /// out as if `d` had passed. Never backwards: a steady clock does not go back.
    void advance(clock::duration d) noexcept {
        if (d > clock::duration::zero()) {
            offset_.fetch_add(d.count(), std::memory_order_relaxed);
        }
    }

    /// The steady-clock instant at which this clock reads `t`: what a timer waits for.
    clock::time_point to_steady(clock::time_point t) const noexcept {
        return t - clock::duration(offset_.load(std::memory_order_relaxed));
    }

    /// The clock of processes that never move it (the default of every component).
    static const time_source& real() noexcept {
        static const time_source r;
        return r;
    }

private:
    std::atomic<clock::rep> offset_{0};
};

}  // namespace imagegate
