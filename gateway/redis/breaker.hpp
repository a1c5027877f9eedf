// The circuit breaker in front of Redis: after a run of failed operations the fleet tier stops
// asking Redis for a cooldown (a dead Redis then costs nothing per request), then lets one
// probe through (half-open) and closes again on its success.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace imagegate::redis {

enum class breaker_state : std::uint8_t {
    closed,     ///< operations go to Redis
    open,       ///< operations are skipped until the cooldown ends
    half_open,  ///< one probe is allowed; its outcome closes or reopens
};

std::string_view to_string(breaker_state s) noexcept;

struct breaker_options {
    /// Consecutive failures (timeouts, lost or refused connections) that open the breaker.
    unsigned failure_threshold = 3;
    /// The first cooldown; doubled each time a probe fails, up to max_cooldown.
    std::chrono::milliseconds cooldown{500};
    std::chrono::milliseconds max_cooldown{5000};
};

/// The pure state machine, time injected. Not thread-safe (breaker wraps it with a lock).
class breaker_core {
public:
    using time_point = std::chrono::steady_clock::time_point;

    explicit breaker_core(breaker_options o = {}) : opts_(o), cooldown_(o.cooldown) {}

    /// May an operation go to Redis at `now`? Open: no, until the cooldown ends; then one
    /// probe (half-open), and another only when that one has not reported for a cooldown.
    bool allow(time_point now) noexcept;
    void on_success() noexcept;
    void on_failure(time_point now) noexcept;
    /// The state at `now` (an open breaker whose cooldown ended reads half_open).
    breaker_state state(time_point now) const noexcept;
    /// Times the breaker opened.
    std::uint64_t opened() const noexcept { return opened_; }

private:
    void open(time_point now) noexcept;

    breaker_options opts_;
    breaker_state state_ = breaker_state::closed;
    unsigned failures_ = 0;
    std::chrono::milliseconds cooldown_;
    time_point open_until_{};
    time_point probe_started_{};
    bool probing_ = false;
    std::uint64_t opened_ = 0;
};

/// breaker_core on the steady clock behind a mutex: one per process, shared by every worker's
/// client (Redis is down for all of them at once). Owned by fleet::redis_clients.
/// Thread-safety: every member from any thread.
class breaker {
public:
    explicit breaker(breaker_options o = {}) : core_(o) {}
    bool allow() {
        const std::lock_guard lock(mu_);
        return core_.allow(std::chrono::steady_clock::now());
    }
    void on_success() {
        const std::lock_guard lock(mu_);
        core_.on_success();
    }
    void on_failure() {
        const std::lock_guard lock(mu_);
        core_.on_failure(std::chrono::steady_clock::now());
    }
    breaker_state state() const {
        const std::lock_guard lock(mu_);
        return core_.state(std::chrono::steady_clock::now());
    }
    std::uint64_t opened() const {
        const std::lock_guard lock(mu_);
        return core_.opened();
    }

private:
    mutable std::mutex mu_;
    breaker_core core_;
};

}  // namespace imagegate::redis
