// A short, bounded memory of failed upstream fetches by key, so that a burst of SDK retries
// for a key whose fetch just failed is answered from it instead of calling the upstream again.
#pragma once

#include "gateway/shield/time.hpp"

#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

namespace imagegate::shield {

/// How long a failed fetch is remembered: the official SDKs retry after 0.5-8 s of backoff
/// (or at once on a bad `Retry-After`); a second covers a burst of them from many clients
/// while keeping a recovered upstream unseen for at most that long.
inline constexpr duration failure_memo_ttl = std::chrono::seconds(1);

/// Failed outcomes by key, each kept for `ttl`, at most `capacity` of them (the oldest goes
/// first: with one TTL for all, the oldest is the first to expire anyway).
///
/// Owned by the image read path. Thread-safe: every member may be called concurrently; each
/// call holds `mu_` for one hash lookup (plus the expiry of old entries on insert).
template <class Key, class Value, class Hash = std::hash<Key>>
class failure_memo {
public:
    explicit failure_memo(std::size_t capacity, duration ttl = failure_memo_ttl)
        : capacity_(capacity == 0 ? 1 : capacity), ttl_(ttl) {}

    /// A remembered failure of `k` still valid at `now`, and how long it stays valid.
    struct found {
        Value value;
        duration remaining;
    };

    std::optional<found> lookup(const Key& k, time_point now) const {
        const std::lock_guard lock(mu_);
        const auto it = entries_.find(k);
        if (it == entries_.end() || it->second.until <= now) {
            return std::nullopt;
        }
        return found{it->second.value, it->second.until - now};
    }

    /// Remembers `v` for `k` until `now + ttl` (replacing an older failure of `k`).
    void remember(const Key& k, Value v, time_point now) {
        const std::lock_guard lock(mu_);
        expire_locked(now);
        const time_point until = now + ttl_;
        if (auto it = entries_.find(k); it != entries_.end()) {
            it->second = entry{std::move(v), until};
        } else {
            if (entries_.size() >= capacity_) {
                evict_oldest_locked();
            }
            entries_.emplace(k, entry{std::move(v), until});
        }
        order_.emplace_back(until, k);
    }

    /// Forgets `k` (its fetch succeeded after all).
    void forget(const Key& k) {
        const std::lock_guard lock(mu_);
        entries_.erase(k);
    }

    std::size_t size() const {
        const std::lock_guard lock(mu_);
        return entries_.size();
    }

private:
    struct entry {
        Value value;
        time_point until;
    };

    void expire_locked(time_point now) {
        while (!order_.empty() && order_.front().first <= now) {
            erase_if_current_locked(order_.front());
            order_.pop_front();
        }
    }

    void evict_oldest_locked() {
        while (!order_.empty()) {
            const bool erased = erase_if_current_locked(order_.front());
            order_.pop_front();
            if (erased) {
                return;
            }
        }
    }

    /// Erases the entry `o` was queued for, unless it was refreshed or forgotten since.
    bool erase_if_current_locked(const std::pair<time_point, Key>& o) {
        const auto it = entries_.find(o.second);
        if (it == entries_.end() || it->second.until != o.first) {
            return false;
        }
        entries_.erase(it);
        return true;
    }

    const std::size_t capacity_;
    const duration ttl_;
    mutable std::mutex mu_;
    std::unordered_map<Key, entry, Hash> entries_;  // guarded by mu_
    std::deque<std::pair<time_point, Key>> order_;  // insertion order; guarded by mu_
};

}  // namespace imagegate::shield
