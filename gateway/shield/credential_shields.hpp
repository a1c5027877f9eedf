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
    /// Credentials tracked at once.
    std::size_t max_credentials = 4096;
    /// Share of `max_credentials` (percent, 1–100) that credentials without a proof may fill;
    /// the rest stays free for credentials the upstream accepted lately.
    std::uint64_t unproven_share_percent = 75;
};

/// The answer of `credential_shields::get`.
struct shield_lookup {
    /// The credential's shield; null when refused: the table is full of shields that must
    /// be kept.
    std::shared_ptr<credential_shield> shield;
    /// Refused: the earliest instant a kept shield may be forgotten (a truthful wait).
    time_point retry_at{};
};

/// Shields by credential digest, bounded without ever forgetting a shield that matters.
///
/// A shield must be kept while forgetting it would let calls through that it refuses: while
/// its upstream pause runs, while its bucket is not full (queued and held slots included: a
/// fresh bucket would grant those tokens again), and while anyone holds it (a fetch or a
/// reservation). Any other shield may go: its bucket is full and it is not paused, so a fresh
/// one behaves the same. Such shields are dropped least recently used first, when a new
/// credential needs room.
///
/// When every shield must be kept, a new credential is refused (429 with the wait until the
/// first may go) rather than an old one forgotten: a flood of new credentials can no longer
/// push a paused credential out (issue 12: a credential paused by an upstream 429 went
/// upstream again 70 s early). New credentials without a proof may fill only
/// `unproven_share_percent` of the table, so such a flood never locks out proven callers.
///
/// Owned by the passthrough gate. Thread-safe: every member may be called concurrently; the
/// map is guarded by `mu_`; a shield outlives its removal while someone holds it.
class credential_shields {
public:
    /// Throws std::invalid_argument like `budget` for unusable budget options, or for a zero
    /// `max_credentials` or a share outside 1–100.
    explicit credential_shields(const credential_shields_options& o);

    /// The shield of `cred` if one is tracked (marked used at `now`), else null.
    std::shared_ptr<credential_shield> find(const credential_digest& cred, time_point now);
    /// The shield of `cred`, created when absent and there is room (`proven`: the upstream
    /// accepted the credential lately), marked used at `now`.
    shield_lookup get(const credential_digest& cred, time_point now, bool proven);

    /// New budget sizes (a configuration reload): every tracked shield's budget resizes at
    /// `now` keeping its state (budget::resize), and shields created later use them. Throws
    /// std::invalid_argument like `budget` for unusable options, changing nothing.
    void resize(const budget_options& b, time_point now);

    /// `true`: empties every tracked shield's bucket at `now` (budget::drain), and shields
    /// created from now on start empty; `false`: new shields start full again. For the fleet
    /// budget's local fallback, which must not add a full bucket per credential to what the
    /// fleet's budget granted just before.
    void start_empty(bool on, time_point now);

    /// Credentials tracked now.
    std::size_t size() const;
    /// Credentials whose upstream pause runs at `now`.
    std::size_t paused(time_point now) const;
    /// Upstream-limit counters summed over every shield ever created (dropped ones included).
    upstream_limit_counters limit_counters() const;

    /// Whether forgetting `s` at `now` could let a call through that `s` refuses.
    static bool must_keep(const std::shared_ptr<credential_shield>& s, time_point now);

private:
    using lru = digest_lru<std::shared_ptr<credential_shield>>;
    /// Drops the least recently used shield that need not be kept; false when none may go.
    /// Requires mu_ held.
    bool drop_one_locked(time_point now);
    void drop_locked(const lru::node& n);

    const credential_shields_options options_;  // `budget` unused: budget_ is in effect
    const std::size_t unproven_limit_;
    mutable std::mutex mu_;
    budget_options budget_;            // guarded by mu_
    lru shields_;                      // guarded by mu_
    upstream_limit_counters retired_;  // guarded by mu_
    /// No shield may be dropped before this instant (a full table was scanned then); spares
    /// the scan for every refused credential of a flood.
    time_point no_drop_before_ = time_point::min();  // guarded by mu_
    bool start_empty_ = false;                       // guarded by mu_
};

}  // namespace imagegate::shield
