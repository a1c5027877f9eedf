// The shield's notion of time: steady-clock types passed in by callers (the shield never
// reads a clock), and the rounding rule that turns a wait into a `Retry-After` value.
#pragma once

#include <chrono>

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

}  // namespace imagegate::shield
