// The emulator's Cloudflare-like rate limiter (a fixed or a sliding window per credential,
// with the "over the limit blocks every call for a while" rule) and its log of calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::testing {

enum class limiter_mode {
  /// At most `limit` calls per window that starts with a credential's first call.
  fixed_window,
  /// At most `limit` calls in ANY interval of length `window` (every accepted call's time
  /// is kept until it leaves the window).
  sliding_window,
};

struct limiter_settings {
  limiter_mode mode = limiter_mode::fixed_window;
  std::uint64_t limit = 1200;
  std::chrono::milliseconds window = std::chrono::minutes(5);
  /// The call that exceeds the limit and every call of that credential for this long get
  /// 429; 0: only calls over the limit are refused.
  std::chrono::milliseconds block = std::chrono::minutes(5);
};

struct limiter_verdict {
  bool limited = false;
  bool tripped_now = false;         ///< this call exceeded the limit (starts a block)
  std::uint64_t remaining = 0;      ///< calls left now (the `Ratelimit` header's r)
  std::uint64_t reset_seconds = 0;  ///< t of `Ratelimit`; Retry-After when limited (≥ 1)
};

/// Per-key state of the limiter. Owned by the emulator's state; not thread-safe (used under
/// its mutex). Keys that have been idle for a window are forgotten once there are many.
class rate_limiter {
 public:
  using clock = std::chrono::steady_clock;

  explicit rate_limiter(limiter_settings s) : s_(s) {}

  limiter_verdict consume(std::string_view key, clock::time_point now);
  void clear() { buckets_.clear(); }
  std::size_t keys() const noexcept { return buckets_.size(); }
  const limiter_settings& settings() const noexcept { return s_; }

 private:
  struct bucket {
    clock::time_point window_start{};        // fixed window
    std::uint64_t used = 0;                  // fixed window
    std::deque<clock::time_point> accepted;  // sliding window: oldest first
    clock::time_point blocked_until{};
  };
  limiter_verdict consume_fixed(bucket& b, clock::time_point now);
  limiter_verdict consume_sliding(bucket& b, clock::time_point now);
  void prune(clock::time_point now);

  limiter_settings s_;
  std::map<std::string, bucket, std::less<>> buckets_;
  std::size_t prune_at_ = 10000;
};

/// One API call as the limiter saw it.
struct call_record {
  std::chrono::microseconds at;  ///< since the emulator started (steady clock)
  bool limited = false;          ///< answered 429 by the limiter (else accepted)
};

/// The last `capacity` calls, oldest first. Not thread-safe (used under the state's mutex).
class call_log {
 public:
  explicit call_log(std::size_t capacity = 100000) : capacity_(capacity) {}

  void add(call_record r);
  /// Records with `at` > `after`, oldest first.
  std::vector<call_record> since(std::chrono::microseconds after) const;
  std::uint64_t total() const noexcept { return total_; }
  /// Records pushed out by newer ones.
  std::uint64_t dropped() const noexcept { return total_ - ring_.size(); }
  void clear();

 private:
  std::size_t capacity_;
  std::vector<call_record> ring_;
  std::size_t next_ = 0;  // where the next record goes once the ring is full
  std::uint64_t total_ = 0;
};

}  // namespace imagegate::testing
