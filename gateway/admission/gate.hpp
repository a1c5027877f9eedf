// How a caller asks the shield for one upstream call: the interface the image read path (and
// later forwarded calls) depends on. local_gate.hpp keeps everything in this process; a
// fleet-wide gate (the same GCRA in Redis) implements the same calls without touching callers.
#pragma once

#include "gateway/admission/ticket.hpp"
#include "gateway/core/digest_lru.hpp"
#include "gateway/shield/budget.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imagegate::admission {

/// One upstream call a caller wants to make. Views, not copies: valid until `reserve` returns.
struct call {
    /// What the call fetches (the cache key's bytes). A refused foreground call holds its
    /// slot for this key, and the key's next call claims it. Empty: no hold made or claimed.
    std::string_view key;
    shield::priority prio = shield::priority::foreground;
    /// Foreground: the longest the caller waits for its slot (shield.max_queue_wait, less when
    /// its deadline is nearer). A slot further away is refused at once with its truthful
    /// wait. Background calls never wait.
    clock::duration max_wait{};
    /// Passthrough: the SHA-256 of the caller's credential, whose own shield decides. Null:
    /// the gateway's token.
    const credential_digest* credential = nullptr;
    /// Passthrough: the upstream accepted the credential lately. False also charges the
    /// shared budget of unproven credentials.
    bool proven = true;
};

/// What an upstream answer said about the rate limit (any status; views into the answer).
struct upstream_signals {
    unsigned status = 0;
    std::string_view retry_after;       ///< `Retry-After` (meaningful on a 429)
    std::string_view ratelimit;         ///< `Ratelimit`
    std::string_view ratelimit_policy;  ///< `Ratelimit-Policy`
};

/// The budget sizes a configuration reload may change: shield.budget, .window, .burst and
/// .unproven_budget (the fleet's totals with a fleet gate).
struct budget_sizes {
    std::uint64_t budget = 0;
    std::chrono::milliseconds window{};
    std::uint64_t burst = 0;
    std::uint64_t unproven_budget = 0;
};

/// The shield as callers see it. Rules every implementation keeps:
/// - no upstream call without a granted ticket, committed right before the call; each
///   attempt (a retry too) is its own call;
/// - a decision is immediate: granted for a slot (now or within `max_wait`; the caller waits
///   with ticket::wait, woken once), or refused with how long until a slot exists for it;
/// - a granted ticket that is not committed gives its slot back (or hands it on);
/// - while the upstream's pause runs, every call of that credential is refused (paused).
/// Owned by the composition root (or the image handler) and shared by every fetch.
/// Thread-safety: every member may be called concurrently from any thread.
class gate {
public:
    virtual ~gate() = default;

    /// Decides for `c`; never waits for the slot itself (a fleet gate waits for Redis).
    virtual asio::awaitable<ticket> reserve(call c) = 0;

    /// Feeds an upstream answer's rate-limit signals for `credential` (null: the token): a
    /// 429 pauses every call for its `Retry-After` (5 min when unusable), a `Ratelimit` at or
    /// under the safety margin pauses until its reset. Returns how long calls are paused
    /// from now, if they are.
    virtual std::optional<clock::duration> observe(const credential_digest* credential,
                                                   const upstream_signals& s) = 0;

    /// Puts new sizes in effect without losing the budgets' state (shield::budget::resize):
    /// tickets already granted keep their slots, and what was spent stays spent. Throws
    /// std::invalid_argument for sizes a budget cannot take, changing nothing.
    virtual void resize(const budget_sizes& sizes) = 0;

    /// Appends budget, queue, refusal and pause metrics in Prometheus text.
    virtual void render_metrics(std::string& out) const = 0;
};

}  // namespace imagegate::admission
