// Fixed and sliding windows, the block that follows a trip, and the bounded call log.
#include "tests/emulator/limiter.hpp"

#include <algorithm>

namespace imagegate::testing {

namespace {

std::uint64_t ceil_seconds(rate_limiter::clock::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms <= 0 ? 0 : static_cast<std::uint64_t>((ms + 999) / 1000);
}

}  // namespace

limiter_verdict rate_limiter::consume(std::string_view key, clock::time_point now) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= prune_at_) {
      prune(now);
    }
    it = buckets_.emplace(std::string(key), bucket{}).first;
    it->second.window_start = now;
  }
  bucket& b = it->second;
  if (now < b.blocked_until) {
    return {true, false, 0, std::max<std::uint64_t>(1, ceil_seconds(b.blocked_until - now))};
  }
  return s_.mode == limiter_mode::fixed_window ? consume_fixed(b, now) : consume_sliding(b, now);
}

limiter_verdict rate_limiter::consume_fixed(bucket& b, clock::time_point now) {
  if (b.blocked_until != clock::time_point{}) {
    // A block has just ended: the credential starts afresh.
    b.blocked_until = {};
    b.window_start = now;
    b.used = 0;
  }
  if (now >= b.window_start + s_.window) {
    b.window_start = now;
    b.used = 0;
  }
  if (b.used >= s_.limit) {
    if (s_.block.count() > 0) {
      b.blocked_until = now + s_.block;
      return {true, true, 0, std::max<std::uint64_t>(1, ceil_seconds(s_.block))};
    }
    return {true, true, 0,
            std::max<std::uint64_t>(1, ceil_seconds(b.window_start + s_.window - now))};
  }
  ++b.used;
  return {false, false, s_.limit - b.used, ceil_seconds(b.window_start + s_.window - now)};
}

limiter_verdict rate_limiter::consume_sliding(bucket& b, clock::time_point now) {
  // A call at t counts in every window that contains t: it leaves at t + window.
  while (!b.accepted.empty() && b.accepted.front() + s_.window <= now) {
    b.accepted.pop_front();
  }
  if (b.accepted.size() >= s_.limit) {
    if (s_.block.count() > 0) {
      b.blocked_until = now + s_.block;
      return {true, true, 0, std::max<std::uint64_t>(1, ceil_seconds(s_.block))};
    }
    return {true, true, 0,
            std::max<std::uint64_t>(1, ceil_seconds(b.accepted.front() + s_.window - now))};
  }
  b.accepted.push_back(now);
  return {false, false, s_.limit - b.accepted.size(),
          ceil_seconds(b.accepted.front() + s_.window - now)};
}

// Forgets credentials that are neither blocked nor have a call inside the window, so a flood
// of made-up credentials cannot grow the table without bound; the threshold doubles with
// what remains, which keeps the sweeps amortised O(1) per new key.
void rate_limiter::prune(clock::time_point now) {
  std::erase_if(buckets_, [&](const auto& kv) {
    const bucket& b = kv.second;
    if (now < b.blocked_until) {
      return false;
    }
    if (s_.mode == limiter_mode::fixed_window) {
      return now >= b.window_start + s_.window;
    }
    return b.accepted.empty() || b.accepted.back() + s_.window <= now;
  });
  prune_at_ = std::max<std::size_t>(10000, 2 * buckets_.size());
}

void call_log::add(call_record r) {
  ++total_;
  if (capacity_ == 0) {
    return;
  }
  if (ring_.size() < capacity_) {
    ring_.push_back(r);
    return;
  }
  ring_[next_] = r;
  next_ = (next_ + 1) % capacity_;
}

std::vector<call_record> call_log::since(std::chrono::microseconds after) const {
  std::vector<call_record> out;
  out.reserve(ring_.size());
  for (std::size_t i = 0; i < ring_.size(); ++i) {
    const call_record& r = ring_[(next_ + i) % ring_.size()];
    if (r.at > after) {
      out.push_back(r);
    }
  }
  return out;
}

void call_log::clear() {
  ring_.clear();
  ring_.shrink_to_fit();
  next_ = 0;
  total_ = 0;
}

}  // namespace imagegate::testing
