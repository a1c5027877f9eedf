// A byte-weighted least-recently-used index: the eviction policy under one cache shard.
// Not thread-safe; `sharded_cache` puts one behind each shard's mutex.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
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

/// Values that know their own key and weight, indexed by that key and evicted least
/// recently used first to stay within `lru_limits` (ClickHouse's LRUCachePolicy behaviour:
/// splice on hit, evict from the front while over budget).
///
/// `Traits` supplies, as static members:
///   - `key_type`: what lookups take, cheap to copy (a view: it may point into the value);
///   - `key_type key_of(const Value&)`, `std::size_t hash(const key_type&)`;
///   - `std::uint64_t weight(const Value&)`, constant for a given value.
///
/// Layout (compact: the key is never copied, only read through the value):
///   - nodes `{Value, prev, next}` in blocks of `block_nodes`, dense: a removed node's slot is
///     filled by moving the last node into it, so indices are 32-bit and the list links are
///     indices;
///   - an open-addressing table (linear probing, backward-shift deletion) of 32-bit node
///     indices, a power of two in size, grown at 3/4 load, so between 3/8 and 3/4 full after
///     growth: at most 32/3 bytes per value, never shrunk. `index_bytes_per_value` is
///     sizeof(node) plus that bound, rounded up.
///
/// Values that leave the index (evicted, replaced, erased) are moved out and handed back to
/// the caller, so a caller holding a lock can destroy them after releasing it.
///
/// Ownership: owns its values. Thread-safety: none; distinct objects are independent, a
/// shared object needs external synchronisation for every member, `get` included (it
/// reorders the recency list).
template <class Value, class Traits>
class lru {
    using index = std::uint32_t;
    static constexpr index npos = std::numeric_limits<index>::max();

    struct node {
        Value value{};
        index prev = npos;  // towards the least recently used
        index next = npos;  // towards the most recently used
    };

public:
    using key_type = typename Traits::key_type;

    /// Nodes per block: the unused tail of the last block is the only slack of the node pool.
    static constexpr std::size_t block_nodes = 256;
    /// Memory one stored value costs the index: its node plus its worst-case share of the
    /// table (4 bytes at 3/8 load).
    static constexpr std::size_t index_bytes_per_value = sizeof(node) + (sizeof(index) * 8 + 2) / 3;

    /// What `put` did.
    struct put_result {
        bool stored = false;            ///< false: refused as too heavy
        std::optional<Value> replaced;  ///< the previous value under the same key, if any
        std::vector<Value> evicted;     ///< least recently used values pushed out for room
    };

    explicit lru(lru_limits limits) : limits_(limits) {}

    lru(const lru&) = delete;
    lru& operator=(const lru&) = delete;

    /// Stores `value` under its key as most recently used, replacing any previous value. A
    /// value heavier than max_entry_bytes or max_bytes is refused; the previous value under
    /// its key is then removed all the same (returned in `replaced`), because the caller
    /// holds newer data for that key and the old value must not outlive it.
    put_result put(Value value) {
        put_result result;
        const std::uint64_t weight = Traits::weight(value);
        // Hashed before `value` moves: the key may point into it.
        const std::size_t hash = Traits::hash(Traits::key_of(value));
        const std::size_t pos = find(Traits::key_of(value), hash);
        if (pos != npos_pos) {
            // Removing the old value first and then evicting for room is what splicing it to
            // the back and evicting up to it would do: it is never among the evicted.
            result.replaced = remove(pos);
        }
        if (weight > limits_.max_bytes || weight > limits_.max_entry_bytes ||
            limits_.max_entries == 0) {
            return result;
        }
        // Evict before accounting the new weight, so bytes_ never exceeds max_bytes.
        while (size_ != 0 &&
               (bytes_ + weight > limits_.max_bytes || size_ >= limits_.max_entries)) {
            result.evicted.push_back(remove(find_index(head_)));
        }
        insert(std::move(value), hash);
        bytes_ += weight;
        result.stored = true;
        return result;
    }

    /// The value under `k`, now most recently used; nullptr if absent. The pointer is valid
    /// until the next non-const call.
    Value* get(const key_type& k) {
        const std::size_t pos = find(k, Traits::hash(k));
        if (pos == npos_pos) {
            return nullptr;
        }
        const index i = table_[pos];
        unlink(i);
        link_back(i);
        return &at(i).value;
    }

    /// Like `get` without changing recency.
    const Value* peek(const key_type& k) const {
        const std::size_t pos = find(k, Traits::hash(k));
        return pos == npos_pos ? nullptr : &at(table_[pos]).value;
    }

    /// Removes and returns the value under `k`.
    std::optional<Value> erase(const key_type& k) {
        const std::size_t pos = find(k, Traits::hash(k));
        if (pos == npos_pos) {
            return std::nullopt;
        }
        return remove(pos);
    }

    /// Removes every value for which `pred(value)` is true; returns them.
    template <class Pred>
    std::vector<Value> erase_if(Pred pred) {
        std::vector<Value> removed;
        // Backwards: removing node i moves the last node, already visited, into slot i.
        for (index i = size_; i-- > 0;) {
            if (pred(std::as_const(at(i).value))) {
                removed.push_back(remove(find_index(i)));
            }
        }
        return removed;
    }

    /// Removes everything; returns the values.
    std::vector<Value> clear() {
        return erase_if([](const Value&) { return true; });
    }

    /// Calls `f(value)` from least to most recently used, without changing recency.
    template <class F>
    void for_each(F f) const {
        for (index i = head_; i != npos; i = at(i).next) {
            f(std::as_const(at(i).value));
        }
    }

    /// Sum of the weights of stored values.
    std::uint64_t bytes() const noexcept { return bytes_; }
    std::uint64_t size() const noexcept { return size_; }
    const lru_limits& limits() const noexcept { return limits_; }

private:
    static constexpr std::size_t npos_pos = std::numeric_limits<std::size_t>::max();

    node& at(index i) noexcept { return blocks_[i / block_nodes][i % block_nodes]; }
    const node& at(index i) const noexcept { return blocks_[i / block_nodes][i % block_nodes]; }

    // Fibonacci hashing onto the table: the high bits of the product, so values whose hashes
    // share their low bits (all of one shard's) still spread.
    std::size_t home(std::size_t hash) const noexcept {
        return static_cast<std::size_t>((hash * 0x9e3779b97f4a7c15ULL) >> shift_);
    }
    std::size_t home_of(index i) const { return home(Traits::hash(Traits::key_of(at(i).value))); }

    // Table position holding the node whose key equals `k`, or npos_pos.
    std::size_t find(const key_type& k, std::size_t hash) const {
        if (table_.empty()) {
            return npos_pos;
        }
        const std::size_t mask = table_.size() - 1;
        for (std::size_t pos = home(hash);; pos = (pos + 1) & mask) {
            const index i = table_[pos];
            if (i == npos) {
                return npos_pos;
            }
            if (Traits::key_of(at(i).value) == k) {
                return pos;
            }
        }
    }

    // Table position holding node index `i` (which is stored).
    std::size_t find_index(index i) const {
        const std::size_t mask = table_.size() - 1;
        std::size_t pos = home_of(i);
        while (table_[pos] != i) {
            pos = (pos + 1) & mask;
        }
        return pos;
    }

    void unlink(index i) noexcept {
        node& n = at(i);
        (n.prev == npos ? head_ : at(n.prev).next) = n.next;
        (n.next == npos ? tail_ : at(n.next).prev) = n.prev;
    }

    void link_back(index i) noexcept {
        node& n = at(i);
        n.prev = tail_;
        n.next = npos;
        (tail_ == npos ? head_ : at(tail_).next) = i;
        tail_ = i;
    }

    void insert(Value value, std::size_t hash) {
        if ((std::size_t{size_} + 1) * 4 > table_.size() * 3) {
            grow_table();
        }
        if (size_ == blocks_.size() * block_nodes) {
            blocks_.push_back(std::make_unique<node[]>(block_nodes));
        }
        const index i = size_++;
        at(i).value = std::move(value);
        link_back(i);
        const std::size_t mask = table_.size() - 1;
        std::size_t pos = home(hash);
        while (table_[pos] != npos) {
            pos = (pos + 1) & mask;
        }
        table_[pos] = i;
    }

    void grow_table() {
        const std::size_t capacity = table_.empty() ? 16 : table_.size() * 2;
        table_.assign(capacity, npos);
        shift_ = 64 - static_cast<unsigned>(std::countr_zero(capacity));
        const std::size_t mask = capacity - 1;
        for (index i = 0; i < size_; ++i) {
            std::size_t pos = home_of(i);
            while (table_[pos] != npos) {
                pos = (pos + 1) & mask;
            }
            table_[pos] = i;
        }
    }

    // Removes the node at table position `pos`; returns its value.
    Value remove(std::size_t pos) {
        const index i = table_[pos];
        Value value = std::move(at(i).value);
        bytes_ -= Traits::weight(value);
        unlink(i);
        erase_slot(pos);
        const index last = size_ - 1;
        if (i != last) {
            // Keep the nodes dense: move the last one into the hole and repoint its
            // table slot and list neighbours.
            table_[find_index(last)] = i;
            node& moved = at(i);
            moved = std::move(at(last));
            (moved.prev == npos ? head_ : at(moved.prev).next) = i;
            (moved.next == npos ? tail_ : at(moved.next).prev) = i;
        }
        at(last) = node{};
        --size_;
        // Keep at most one spare block.
        while (blocks_.size() * block_nodes >= std::size_t{size_} + 2 * block_nodes) {
            blocks_.pop_back();
        }
        return value;
    }

    // Backward-shift deletion: pull later members of the probe run into the hole unless that
    // would move them before their home position.
    void erase_slot(std::size_t hole) {
        const std::size_t mask = table_.size() - 1;
        for (std::size_t pos = (hole + 1) & mask; table_[pos] != npos; pos = (pos + 1) & mask) {
            const std::size_t want = home_of(table_[pos]);
            // Movable iff `want` is not cyclically inside (hole, pos].
            if (((pos - want) & mask) >= ((pos - hole) & mask)) {
                table_[hole] = table_[pos];
                hole = pos;
            }
        }
        table_[hole] = npos;
    }

    lru_limits limits_;
    std::vector<std::unique_ptr<node[]>> blocks_;  // nodes [0, size_) in use
    std::vector<index> table_;                     // node index per slot, npos = empty
    unsigned shift_ = 64;                          // 64 - log2(table_.size())
    index size_ = 0;
    index head_ = npos;  // least recently used
    index tail_ = npos;  // most recently used
    std::uint64_t bytes_ = 0;
};

}  // namespace imagegate::cache
