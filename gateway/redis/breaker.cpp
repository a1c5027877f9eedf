#include "gateway/redis/breaker.hpp"

#include <algorithm>

namespace imagegate::redis {

std::string_view to_string(breaker_state s) noexcept {
    switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
    }
    return "unknown";
}

bool breaker_core::allow(time_point now) noexcept {
    switch (state_) {
    case breaker_state::closed: return true;
    case breaker_state::open:
        if (now < open_until_) {
            return false;
        }
        state_ = breaker_state::half_open;
        probing_ = true;
        probe_started_ = now;
        return true;
    case breaker_state::half_open:
        // A probe whose caller vanished (cancelled) never reports: after a cooldown another
        // caller may probe, so the breaker cannot stay half-open for ever.
        if (probing_ && now < probe_started_ + cooldown_) {
            return false;
        }
        probing_ = true;
        probe_started_ = now;
        return true;
    }
    return false;
}

void breaker_core::on_success() noexcept {
    state_ = breaker_state::closed;
    failures_ = 0;
    probing_ = false;
    cooldown_ = opts_.cooldown;
}

void breaker_core::on_failure(time_point now) noexcept {
    switch (state_) {
    case breaker_state::closed:
        if (++failures_ >= opts_.failure_threshold) {
            open(now);
        }
        return;
    case breaker_state::half_open:
        cooldown_ = std::min(cooldown_ * 2, opts_.max_cooldown);
        open(now);
        return;
    case breaker_state::open: return;  // an operation let through before the breaker opened
    }
}

breaker_state breaker_core::state(time_point now) const noexcept {
    if (state_ == breaker_state::open && now >= open_until_) {
        return breaker_state::half_open;
    }
    return state_;
}

void breaker_core::open(time_point now) noexcept {
    state_ = breaker_state::open;
    open_until_ = now + cooldown_;
    probing_ = false;
    failures_ = 0;
    ++opened_;
}

}  // namespace imagegate::redis
