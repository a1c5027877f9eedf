// The upstream's own rate-limit signals for one credential: a 429's `Retry-After` and the
// IETF-draft `Ratelimit` / `Ratelimit-Policy` headers, turned into "no upstream call until T".
#pragma once

#include "gateway/shield/time.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <mutex>
#include <optional>
#include <string_view>

namespace imagegate::shield {

/// Cloudflare blocks a token for 5 minutes once it goes over; a 429 whose `Retry-After` is
/// missing or unusable is assumed to mean exactly that.
inline constexpr duration default_pause = std::chrono::minutes(5);
/// No header, however large or hostile its value, stops upstream calls for longer than this.
inline constexpr duration pause_cap = std::chrono::hours(1);

/// Parses a `Retry-After` value (RFC 9110 §10.2.3) into how long to pause.
///
/// - delta-seconds (`1*DIGIT`, optional surrounding whitespace): that many seconds, at least
///   1 s (a 429 with `Retry-After: 0` must still not be answered by an immediate retry) and
///   at most `cap`; a number too large to represent is `cap` (as RFC 9111 §1.2.2 says for
///   delta-seconds overflow).
/// - An HTTP-date, an empty value or anything else: `fallback`. Dates are not parsed on
///   purpose: turning one into a steady-clock wait needs the wall clock plus trust in the
///   upstream's clock, and Cloudflare sends delta-seconds; the 5 minute default is its
///   documented block length anyway.
duration parse_retry_after(std::string_view value, duration fallback = default_pause,
                           duration cap = pause_cap) noexcept;

/// The most restrictive item of a `Ratelimit` header
/// (draft-ietf-httpapi-ratelimit-headers: `"default";r=<remaining>;t=<seconds to reset>`).
struct ratelimit_state {
    std::uint64_t remaining = 0;    ///< `r`: calls left in the current window
    std::chrono::seconds reset{0};  ///< `t`: seconds until the quota is restored

    friend bool operator==(const ratelimit_state&, const ratelimit_state&) = default;
};

/// One item of a `Ratelimit-Policy` header (`"burst";q=<quota>;w=<window seconds>`).
struct ratelimit_policy {
    std::uint64_t quota = 0;         ///< `q`: calls allowed per window (>= 1)
    std::chrono::seconds window{0};  ///< `w`: the window; 0 when the item has no `w`

    friend bool operator==(const ratelimit_policy&, const ratelimit_policy&) = default;
};

/// Parses a `Ratelimit` value leniently: whitespace around `,` `;` `=`, any parameter order,
/// unknown parameters (`pk`, ...), a missing or unquoted policy name, quoted integers and any
/// case of `r`/`t` are accepted. A list of several policies yields the one with the fewest
/// calls left (ties: the longer reset). Items without both `r` and `t`, or with any of `r`
/// `t` `q` `w` not a non-negative integer of at most 15 digits (RFC 8941 §3.3.1), are skipped;
/// nullopt when none is left, including for the older `remaining=..., reset=...` form. An
/// unterminated quoted string rejects the whole value.
std::optional<ratelimit_state> parse_ratelimit(std::string_view value) noexcept;

/// Parses a `Ratelimit-Policy` value with the same leniency and the same item rules, except
/// that an item needs a `q` >= 1 (and `w` is optional); of several,
/// the largest quota wins (it gives the larger, more cautious safety margin).
std::optional<ratelimit_policy> parse_ratelimit_policy(std::string_view value) noexcept;

/// What one `observe_ratelimit` call concluded.
enum class ratelimit_verdict {
    absent,   ///< no `Ratelimit` header (empty value): nothing learned
    invalid,  ///< a header nobody could parse: ignored and counted; never pauses
    ok,       ///< remaining is above the safety margin, or the window resets now
    paused,   ///< remaining is at or below the margin: paused until the reset (or max_pause)
};

std::ostream& operator<<(std::ostream& os, ratelimit_verdict v);
std::ostream& operator<<(std::ostream& os, const ratelimit_state& s);
std::ostream& operator<<(std::ostream& os, const ratelimit_policy& p);

/// Thresholds for `upstream_limit`.
struct upstream_limit_options {
    /// Pause when `r` is at or below this many calls ...
    std::uint64_t margin_floor = 10;
    /// ... or at or below this percentage of the policy quota (rounded up), whichever is
    /// larger: 60 for Cloudflare's 1200.
    std::uint64_t margin_percent = 5;
    /// Quota assumed until a `Ratelimit-Policy` is seen: Cloudflare's documented 1200 / 5 min.
    std::uint64_t default_quota = 1200;
    /// Longest pause `pause_until` and `observe_ratelimit` impose.
    duration max_pause = pause_cap;
};

/// Monotonic counters (relaxed reads; fields are not a consistent snapshot).
struct upstream_limit_counters {
    std::uint64_t upstream_429s = 0;    ///< `pause_until` calls, i.e. 429s from the upstream
    std::uint64_t pauses = 0;           ///< times the credential went from unpaused to paused
    double seconds_paused = 0;          ///< total length of pause time imposed (overlaps once)
    std::uint64_t invalid_headers = 0;  ///< `Ratelimit` / `Ratelimit-Policy` values ignored

    friend bool operator==(const upstream_limit_counters&,
                           const upstream_limit_counters&) = default;
};

std::ostream& operator<<(std::ostream& os, const upstream_limit_counters& c);

/// Whether the upstream has told us to stop calling with one credential, and until when.
///
/// Pause, not slow down, when `Ratelimit` runs low: our own `budget` keeps well under the
/// quota, so a low `r` means someone else (the dashboard, another tool or instance on the same
/// token) is spending it, and our picture of the rate is wrong. Going to zero costs 5 minutes
/// of 429s on every call of that user; pausing costs at most `t` seconds of misses that are
/// answered stale or with a truthful `Retry-After`. Pacing the last few calls over `t` would
/// still race the other spender for them.
///
/// A pause only ever extends: a later header with a shorter reset (or plenty remaining) does
/// not lift a pause that a 429 imposed.
///
/// Owned by the composition root next to the credential's `budget`. Thread-safe: every member
/// may be called concurrently; each holds `mutex_` for a few operations.
class upstream_limit {
public:
    explicit upstream_limit(const upstream_limit_options& options = {});

    upstream_limit(const upstream_limit&) = delete;
    upstream_limit& operator=(const upstream_limit&) = delete;

    /// The upstream answered 429: counts it and allows no upstream call for this credential
    /// before `now + retry_after` (clamped to [0, max_pause]). Pass
    /// `parse_retry_after(header)`.
    void pause_until(time_point now, duration retry_after) noexcept;

    /// Feeds the `Ratelimit` (and, when present, `Ratelimit-Policy`) header values of any
    /// upstream response. An empty `policy` keeps the last quota seen.
    ratelimit_verdict observe_ratelimit(time_point now, std::string_view ratelimit,
                                        std::string_view policy = {}) noexcept;

    /// How long upstream calls must still wait (for a client's `Retry-After`), or nullopt if
    /// they may go now. A pause ending at T blocks calls strictly before T.
    std::optional<duration> blocked_for(time_point now) const noexcept;
    bool is_paused(time_point now) const noexcept;

    /// The pause threshold on `r` for the quota currently believed in.
    std::uint64_t margin() const noexcept;

    upstream_limit_counters counters() const noexcept;

private:
    /// Moves the end of the pause to `until` if that is later; requires mutex_ held.
    void extend_locked(time_point now, time_point until) noexcept;
    std::uint64_t margin_locked() const noexcept;

    const upstream_limit_options options_;

    mutable std::mutex mutex_;
    /// No upstream call before this instant; min() = never paused.
    time_point paused_until_ = time_point::min();  // guarded by mutex_
    /// Quota of the last valid `Ratelimit-Policy`, or options_.default_quota.
    std::uint64_t quota_;  // guarded by mutex_

    std::atomic<std::uint64_t> upstream_429s_{0};
    std::atomic<std::uint64_t> pauses_{0};
    std::atomic<std::int64_t> paused_ticks_{0};  ///< seconds_paused, in duration ticks
    std::atomic<std::uint64_t> invalid_headers_{0};
};

}  // namespace imagegate::shield
