// A byte-weighted least-recently-used index: the eviction policy under one cache shard.
// Not thread-safe; `sharded_cache` puts one behind each shard's mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <list>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace imagegate::cache {

/// Limits of one `lru`.
struct lru_limits {
    /// The sum of the weights of stored values never exceeds this.
    std::uint64_t max_bytes = 0;
    /// Stored values at most.
    std::uint64_t max_entries = std::numeric_limits<std::uint64_t>::max();
    /// A value weighing more than this (or more than max_bytes) is refused.
    std::uint64_t max_entry_bytes = std::numeric_limits<std::uint64_t>::max();
};

/// Key → value map that evicts the least recently used values to stay within `lru_limits`
/// (the shape of ClickHouse's LRUCachePolicy: a recency list plus a hash map, splice on hit).
///
/// Values that leave the index (evicted, replaced, erased) are moved out and handed back to
/// the caller, so a caller holding a lock can destroy them after releasing it.
///
/// Ownership: owns its keys and values. Thread-safety: none; distinct objects are
/// independent, a shared object needs external synchronisation for every member, `get`
/// included (it reorders the recency list).
template <class Key, class Value, class Hash = std::hash<Key>>
class lru {
public:
    /// What `put` did.
    struct put_result {
        bool stored = false;            ///< false: refused as too heavy
        std::optional<Value> replaced;  ///< the previous value under the same key, if any
        std::vector<Value> evicted;     ///< least recently used values pushed out for room
    };

    explicit lru(lru_limits limits) : limits_(limits) {}

    lru(const lru&) = delete;
    lru& operator=(const lru&) = delete;

    /// Stores `value` under `k` as most recently used, replacing any previous value. A value
    /// heavier than max_entry_bytes or max_bytes is refused; the previous value under `k` is
    /// then removed all the same (returned in `replaced`), because the caller holds newer
    /// data for that key and the old value must not outlive it.
    put_result put(const Key& k, Value value, std::uint64_t weight) {
        put_result result;
        auto it = cells_.find(k);
        if (weight > limits_.max_bytes || weight > limits_.max_entry_bytes ||
            limits_.max_entries == 0) {
            if (it != cells_.end()) {
                result.replaced = remove(it);
            }
            return result;
        }
        if (it != cells_.end()) {
            cell& c = it->second;
            order_.splice(order_.end(), order_, c.pos);
            bytes_ -= c.weight;
            // Evict before accounting the new weight, so bytes_ never exceeds max_bytes.
            // The replaced value is at the back; weight <= max_bytes stops the loop before it.
            while (bytes_ + weight > limits_.max_bytes && order_.front() != &it->first) {
                evict_front(result.evicted);
            }
            result.replaced = std::exchange(c.value, std::move(value));
            c.weight = weight;
            bytes_ += weight;
            result.stored = true;
            return result;
        }
        while (!order_.empty() &&
               (bytes_ + weight > limits_.max_bytes || cells_.size() >= limits_.max_entries)) {
            evict_front(result.evicted);
        }
        it = cells_.emplace(k, cell{std::move(value), weight, {}}).first;
        it->second.pos = order_.insert(order_.end(), &it->first);
        bytes_ += weight;
        result.stored = true;
        return result;
    }

    /// The value under `k`, now most recently used; nullptr if absent. The pointer is valid
    /// until the next non-const call.
    Value* get(const Key& k) {
        const auto it = cells_.find(k);
        if (it == cells_.end()) {
            return nullptr;
        }
        order_.splice(order_.end(), order_, it->second.pos);
        return &it->second.value;
    }

    /// Like `get` without changing recency.
    const Value* peek(const Key& k) const {
        const auto it = cells_.find(k);
        return it == cells_.end() ? nullptr : &it->second.value;
    }

    /// Removes and returns the value under `k`.
    std::optional<Value> erase(const Key& k) {
        const auto it = cells_.find(k);
        if (it == cells_.end()) {
            return std::nullopt;
        }
        return remove(it);
    }

    /// Removes every value for which `pred(key, value)` is true; returns them.
    template <class Pred>
    std::vector<Value> erase_if(Pred pred) {
        std::vector<Value> removed;
        for (auto it = cells_.begin(); it != cells_.end();) {
            if (pred(it->first, std::as_const(it->second.value))) {
                auto next = std::next(it);
                removed.push_back(remove(it));
                it = next;
            } else {
                ++it;
            }
        }
        return removed;
    }

    /// Removes everything; returns the values.
    std::vector<Value> clear() {
        return erase_if([](const Key&, const Value&) { return true; });
    }

    /// Calls `f(key, value)` from least to most recently used, without changing recency.
    template <class F>
    void for_each(F f) const {
        for (const Key* k : order_) {
            f(*k, cells_.find(*k)->second.value);
        }
    }

    /// Sum of the weights of stored values.
    std::uint64_t bytes() const noexcept { return bytes_; }
    std::uint64_t size() const noexcept { return cells_.size(); }
    const lru_limits& limits() const noexcept { return limits_; }

private:
    // Recency order of the keys, least recently used first. The pointers are to the keys
    // inside cells_, which stay put (unordered_map nodes are stable), so each key is stored
    // once.
    using order_list = std::list<const Key*>;

    struct cell {
        Value value;
        std::uint64_t weight = 0;
        typename order_list::iterator pos;
    };
    using cell_map = std::unordered_map<Key, cell, Hash>;

    Value remove(typename cell_map::iterator it) {
        Value value = std::move(it->second.value);
        bytes_ -= it->second.weight;
        order_.erase(it->second.pos);
        cells_.erase(it);
        return value;
    }

    void evict_front(std::vector<Value>& out) {
        out.push_back(remove(cells_.find(*order_.front())));
    }

    lru_limits limits_;
    cell_map cells_;
    order_list order_;
    std::uint64_t bytes_ = 0;
};

}  // namespace imagegate::cache
