// The shield's notion of time: steady-clock types passed in by callers (the shield never
// reads a clock), and the rounding rules that turn a wait into what a refused client is told.
#pragma once

#include <chrono>
#include <iosfwd>

namespace imagegate::shield {

/// A point on the caller's steady clock. Every stateful shield call takes one as `now`, so
/// tests drive time by hand and production reads `steady_clock::now()` once per request.
using time_point = std::chrono::steady_clock::time_point;
/// Nanoseconds on libstdc++; every wait the shield computes is exact to this resolution.
using duration = std::chrono::steady_clock::duration;

/// Whole seconds for a `Retry-After` (RFC 9110 §10.2.3, delta-seconds), rounded UP so a client
/// that waits exactly that long finds the resource available: 1 ns → 1 s, 1 s → 1 s,
/// 1 s + 1 ns → 2 s. Zero or negative waits give 0.
std::chrono::seconds retry_after_seconds(duration wait) noexcept;

/// What a refused client is told: `Retry-After` (whole seconds) and `retry-after-ms`, which
/// the official SDKs read first.
struct retry_advice {
    std::chrono::seconds seconds{1};
    std::chrono::milliseconds milliseconds{1000};

    friend bool operator==(const retry_advice&, const retry_advice&) = default;
};

std::ostream& operator<<(std::ostream& os, const retry_advice& a);

/// The advice for a refusal whose slot is `wait` away. Not held: rounded up, because nothing
/// exists before. Held (a slot kept for this key): rounded DOWN, so a client that obeys
/// arrives at or just before its slot and waits the remaining fraction in the queue
/// (shield.max_queue_wait is at least 1 s) instead of arriving after it and finding the
/// slot gone. Never below 1 s / 1 ms: SDKs retry at once on 0.
retry_advice advise_retry(duration wait, bool held) noexcept;

}  // namespace imagegate::shield
