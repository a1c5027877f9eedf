// Passthrough mode's shields: one request budget and one view of the upstream's rate limit per
// caller credential (Cloudflare limits per user), so one caller cannot spend another's quota.
#pragma once

#include "gateway/shield/budget.hpp"
#include "gateway/core/digest_lru.hpp"
#include "gateway/shield/upstream_limit.hpp"

#include <cstddef>
#include <memory>
#include <mutex>

namespace imagegate::shield {

/// The budget and upstream-limit state of one upstream credential.
/// Thread-safe (both members are).
struct credential_shield {
    credential_shield(const budget_options& b, const upstream_limit_options& l)
        : budget(b), limit(l) {}
    shield::budget budget;
    shield::upstream_limit limit;
};

struct credential_shields_options {
    budget_options budget;
    upstream_limit_options limit;
    /// Credentials tracked at once; past it the least recently used is dropped.
    std::size_t max_credentials = 4096;
};

/// Shields by credential digest. A credential unused for a whole budget window is dropped
/// (its bucket would be full again, so forgetting it grants nothing), unless its upstream
/// pause still runs. The bound drops the least recently used credential even if it is not
/// idle: memory stays bounded whatever callers send, at the price of a fresh bucket for a
/// caller crowded out by thousands of others (the upstream's own limit still applies).
///
/// Owned by the image handler. Thread-safe: every member may be called concurrently; the map
/// is guarded by `mu_` for a few operations, a shield outlives its removal while a fetch holds
/// it.
class credential_shields {
public:
    /// Throws std::invalid_argument like `budget` for unusable budget options, or for a zero
    /// `max_credentials`.
    explicit credential_shields(const credential_shields_options& o);

    /// The shield of `cred`, created when absent, marked used at `now`.
    std::shared_ptr<credential_shield> get(const credential_digest& cred, time_point now);

    /// Credentials tracked now.
    std::size_t size() const;
    /// Credentials whose upstream pause runs at `now`.
    std::size_t paused(time_point now) const;
    /// Upstream-limit counters summed over every shield ever created (dropped ones included).
    upstream_limit_counters limit_counters() const;

private:
    /// Drops the oldest shield into the retired counters; requires mu_ held.
    void drop_oldest_locked();

    const credential_shields_options options_;
    const duration idle_after_;
    mutable std::mutex mu_;
    digest_lru<std::shared_ptr<credential_shield>> shields_;  // guarded by mu_
    upstream_limit_counters retired_;                         // guarded by mu_
};

}  // namespace imagegate::shield
