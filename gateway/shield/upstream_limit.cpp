#include "gateway/shield/upstream_limit.hpp"

#include <algorithm>
#include <ostream>
#include <utility>

namespace imagegate::shield {

namespace {

// Header values come from the network: every function below is total over arbitrary bytes.

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_ows(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

constexpr char to_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool equals_lower(std::string_view key, std::string_view lower) noexcept {
    return key.size() == lower.size() &&
           std::equal(key.begin(), key.end(), lower.begin(),
                      [](char a, char b) { return to_lower(a) == b; });
}

/// Calls `f(part)` for each part of `s` between `sep`s that are not inside a double-quoted
/// string (RFC 8941 §3.3.3, backslash escapes). False on an unterminated string.
template <class F>
bool split_outside_quotes(std::string_view s, char sep, F&& f) {
    bool quoted = false;
    std::size_t start = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (quoted) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                quoted = false;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == sep) {
            f(s.substr(start, i - start));
            start = i + 1;
        }
    }
    if (quoted) {
        return false;
    }
    f(s.substr(start));
    return true;
}

/// RFC 8941 sf-integers are at most 15 digits; ours are never negative.
constexpr std::size_t max_integer_digits = 15;

/// A non-negative integer of 1..15 digits, optionally in double quotes (lenient).
std::optional<std::uint64_t> parse_integer(std::string_view v) noexcept {
    v = trim(v);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
        v = trim(v.substr(1, v.size() - 2));
    }
    if (v.empty() || v.size() > max_integer_digits) {
        return std::nullopt;
    }
    std::uint64_t n = 0;
    for (const char c : v) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
}

/// The parameters of one list member that these headers use.
struct item_params {
    std::optional<std::uint64_t> r, t, q, w;
    /// A known parameter had a value that is not an integer: the member is unusable.
    bool malformed = false;
};

/// Parses one list member: `[name] *( ";" key [ "=" value ] )`, lenient as documented in the
/// header. The name (quoted string or token) is ignored: Cloudflare's `Ratelimit` item is
/// "default" while its policy is "burst", so names cannot be matched up anyway.
item_params parse_member(std::string_view member) noexcept {
    item_params p;
    bool first = true;
    split_outside_quotes(member, ';', [&](std::string_view segment) {
        segment = trim(segment);
        const bool was_first = std::exchange(first, false);
        const auto eq = segment.find('=');
        if (segment.empty() || (was_first && (segment.front() == '"' || eq == segment.npos))) {
            return;  // the policy name, or an empty segment (`;;`, trailing `;`)
        }
        const auto key = trim(segment.substr(0, eq));
        const auto value = eq == segment.npos ? std::string_view{} : segment.substr(eq + 1);
        std::optional<std::uint64_t>* slot = nullptr;
        if (equals_lower(key, "r")) {
            slot = &p.r;
        } else if (equals_lower(key, "t")) {
            slot = &p.t;
        } else if (equals_lower(key, "q")) {
            slot = &p.q;
        } else if (equals_lower(key, "w")) {
            slot = &p.w;
        }
        if (slot == nullptr) {
            return;  // unknown parameter (pk, future ones)
        }
        *slot = parse_integer(value);  // RFC 8941: the last duplicate wins
        if (!*slot) {
            p.malformed = true;
        }
    });
    return p;
}

/// Calls `f(params)` for every well-formed member of a list header. False if the quoting is
/// broken, in which case no member is trusted.
template <class F>
bool for_each_member(std::string_view value, F&& f) noexcept {
    // First pass only checks the quoting, so a broken header never yields half its members.
    if (!split_outside_quotes(value, ',', [](std::string_view) {})) {
        return false;
    }
    split_outside_quotes(value, ',', [&](std::string_view member) {
        if (trim(member).empty()) {
            return;
        }
        const item_params p = parse_member(member);
        if (!p.malformed) {
            f(p);
        }
    });
    return true;
}

/// `s` seconds as a pause, capped at `cap` before the conversion can overflow.
duration capped_seconds(std::uint64_t s, duration cap) noexcept {
    const auto cap_s =
        static_cast<std::uint64_t>(std::chrono::floor<std::chrono::seconds>(cap).count());
    if (s >= cap_s) {
        return cap;
    }
    return std::chrono::seconds(static_cast<std::int64_t>(s));
}

}  // namespace

duration parse_retry_after(std::string_view value, duration fallback, duration cap) noexcept {
    value = trim(value);
    if (value.empty()) {
        return fallback;
    }
    std::uint64_t n = 0;
    bool saturated = false;
    for (const char c : value) {
        if (c < '0' || c > '9') {
            return fallback;  // an HTTP-date, a sign, a fraction or garbage
        }
        if (!saturated) {
            n = n * 10 + static_cast<std::uint64_t>(c - '0');
            // Past 10^15 s (30 million years) every cap has long been exceeded.
            saturated = n > 1'000'000'000'000'000ULL;
        }
    }
    return capped_seconds(std::max<std::uint64_t>(n, 1), cap);
}

std::optional<ratelimit_state> parse_ratelimit(std::string_view value) noexcept {
    std::optional<ratelimit_state> best;
    const bool well_quoted = for_each_member(value, [&](const item_params& p) {
        if (!p.r || !p.t) {
            return;
        }
        const ratelimit_state s{*p.r, std::chrono::seconds(static_cast<std::int64_t>(*p.t))};
        if (!best || s.remaining < best->remaining ||
            (s.remaining == best->remaining && s.reset > best->reset)) {
            best = s;
        }
    });
    return well_quoted ? best : std::nullopt;
}

std::optional<ratelimit_policy> parse_ratelimit_policy(std::string_view value) noexcept {
    std::optional<ratelimit_policy> best;
    const bool well_quoted = for_each_member(value, [&](const item_params& p) {
        if (!p.q || *p.q == 0) {
            return;
        }
        const auto window = static_cast<std::int64_t>(p.w.value_or(0));
        const ratelimit_policy policy{*p.q, std::chrono::seconds(window)};
        if (!best || policy.quota > best->quota) {
            best = policy;
        }
    });
    return well_quoted ? best : std::nullopt;
}

upstream_limit::upstream_limit(const upstream_limit_options& options)
    : options_(options), quota_(options.default_quota) {}

void upstream_limit::pause_until(time_point now, duration retry_after) noexcept {
    upstream_429s_.fetch_add(1, std::memory_order_relaxed);
    const duration d = std::clamp(retry_after, duration::zero(), options_.max_pause);
    const std::lock_guard lock(mutex_);
    extend_locked(now, now + d);
}

ratelimit_verdict upstream_limit::observe_ratelimit(time_point now, std::string_view ratelimit,
                                                    std::string_view policy) noexcept {
    // The policy first, so that the margin applied below uses this response's quota.
    if (!trim(policy).empty()) {
        if (const auto p = parse_ratelimit_policy(policy)) {
            const std::lock_guard lock(mutex_);
            quota_ = p->quota;
        } else {
            invalid_headers_.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if (trim(ratelimit).empty()) {
        return ratelimit_verdict::absent;
    }
    const auto state = parse_ratelimit(ratelimit);
    if (!state) {
        invalid_headers_.fetch_add(1, std::memory_order_relaxed);
        return ratelimit_verdict::invalid;
    }
    const std::lock_guard lock(mutex_);
    if (state->remaining > margin_locked() || state->reset <= std::chrono::seconds::zero()) {
        return ratelimit_verdict::ok;
    }
    const auto reset =
        capped_seconds(static_cast<std::uint64_t>(state->reset.count()), options_.max_pause);
    extend_locked(now, now + reset);
    return ratelimit_verdict::paused;
}

void upstream_limit::extend_locked(time_point now, time_point until) noexcept {
    if (until <= now || until <= paused_until_) {
        return;
    }
    if (paused_until_ <= now) {
        pauses_.fetch_add(1, std::memory_order_relaxed);
    }
    // Overlapping pauses count once: only the part beyond the running pause is new.
    const duration added = until - std::max(paused_until_, now);
    paused_ticks_.fetch_add(added.count(), std::memory_order_relaxed);
    paused_until_ = until;
}

std::optional<duration> upstream_limit::blocked_for(time_point now) const noexcept {
    const std::lock_guard lock(mutex_);
    if (now < paused_until_) {
        return paused_until_ - now;
    }
    return std::nullopt;
}

bool upstream_limit::is_paused(time_point now) const noexcept {
    return blocked_for(now).has_value();
}

std::uint64_t upstream_limit::margin() const noexcept {
    const std::lock_guard lock(mutex_);
    return margin_locked();
}

std::uint64_t upstream_limit::margin_locked() const noexcept {
    // ceil(quota * percent / 100), split so that no quota can overflow the product.
    const std::uint64_t pct = options_.margin_percent;
    const std::uint64_t share = quota_ / 100 * pct + (quota_ % 100 * pct + 99) / 100;
    return std::max(options_.margin_floor, share);
}

upstream_limit_counters upstream_limit::counters() const noexcept {
    const duration paused(paused_ticks_.load(std::memory_order_relaxed));
    return {.upstream_429s = upstream_429s_.load(std::memory_order_relaxed),
            .pauses = pauses_.load(std::memory_order_relaxed),
            .seconds_paused = std::chrono::duration<double>(paused).count(),
            .invalid_headers = invalid_headers_.load(std::memory_order_relaxed)};
}

std::ostream& operator<<(std::ostream& os, ratelimit_verdict v) {
    switch (v) {
    case ratelimit_verdict::absent: return os << "absent";
    case ratelimit_verdict::invalid: return os << "invalid";
    case ratelimit_verdict::ok: return os << "ok";
    case ratelimit_verdict::paused: return os << "paused";
    }
    return os << "ratelimit_verdict(" << static_cast<int>(v) << ")";
}

std::ostream& operator<<(std::ostream& os, const ratelimit_state& s) {
    return os << "{r=" << s.remaining << " t=" << s.reset.count() << "s}";
}

std::ostream& operator<<(std::ostream& os, const ratelimit_policy& p) {
    return os << "{q=" << p.quota << " w=" << p.window.count() << "s}";
}

std::ostream& operator<<(std::ostream& os, const upstream_limit_counters& c) {
    return os << "{upstream_429s=" << c.upstream_429s << " pauses=" << c.pauses
              << " seconds_paused=" << c.seconds_paused << " invalid_headers=" << c.invalid_headers
              << "}";
}

}  // namespace imagegate::shield
