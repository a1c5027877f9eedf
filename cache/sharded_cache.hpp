// The in-memory record cache: 2^k independently locked LRU shards under one byte budget,
// with hit/miss/eviction counters.
#pragma once

#include "cache/entry.hpp"
#include "cache/key.hpp"
#include "cache/lru.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

namespace imagegate::cache {

/// Construction parameters; the gateway maps `config` settings onto them.
struct options {
    std::uint64_t max_bytes = 0;    ///< accounted bytes of all shards together, at most
    std::uint64_t max_entries = 0;  ///< entries of all shards together; 0 = unbounded
    /// An entry charged more than this (`charged_bytes`, not the body size) is not stored;
    /// 0 = only the shard budget limits it.
    std::uint64_t max_entry_bytes = 0;
    std::uint32_t shards = 16;  ///< a power of two, >= 1
};

/// Counters since construction, and the current gauges. Each field is read separately with
/// relaxed ordering, so a snapshot taken under load is not one consistent instant.
struct stats {
    std::uint64_t hits = 0;                ///< `get` found a usable entry
    std::uint64_t misses = 0;              ///< `get` found nothing, or only an expired entry
    std::uint64_t inserts = 0;             ///< `put` stored an entry (new or replacing)
    std::uint64_t evictions = 0;           ///< entries pushed out for room (not erases)
    std::uint64_t rejected_too_large = 0;  ///< `put` refused an entry as too heavy
    /// `put_if_current` refused an entry: its key or account was erased since its generation
    /// was read (a purge won over a fetch in flight).
    std::uint64_t purge_raced = 0;
    std::uint64_t bytes = 0;    ///< accounted bytes now stored
    std::uint64_t entries = 0;  ///< entries now stored

    friend bool operator==(const stats&, const stats&) = default;
};
std::ostream& operator<<(std::ostream& os, const stats& s);

/// Occupancy of one shard, for metrics and tests.
struct shard_stats {
    std::uint64_t bytes = 0;
    std::uint64_t entries = 0;
    std::uint64_t max_bytes = 0;  ///< this shard's byte budget

    friend bool operator==(const shard_stats&, const shard_stats&) = default;
};
std::ostream& operator<<(std::ostream& os, const shard_stats& s);

/// The bytes one stored entry is charged while in a shard: the entry itself (`entry::bytes`,
/// one arena slot holding control block, entry, key, head and body) plus its index slot
/// (`lru::index_bytes_per_value`: the 24-byte node `{shared_ptr, prev, next}` and at most
/// 11 bytes of open-addressing table). The index refers to the key bytes inside the entry,
/// so the key is not copied. Fixed per-shard slack (at most one spare block of 256 nodes, and
/// a table that keeps its high-water size after erases) is not charged to entries.
std::uint64_t charged_bytes(const entry& e) noexcept;

/// Thread-safe cache of `shared_ptr<const entry>` keyed by `key`, bounded by accounted bytes.
///
/// Sharding: shard = hash(key) & (shards - 1). Each shard is a mutex plus an `lru` with
/// byte budget max_bytes / shards (and max_entries / shards when bounded); the remainder is
/// spread one unit per shard over the first shards, so the budgets sum to exactly the
/// totals and the accounted bytes of the whole cache never exceed max_bytes. Every operation
/// locks one shard for a few map operations (erase_account and clear visit each shard in
/// turn); entries leaving the cache are released after the shard's mutex is unlocked, so a
/// large body is never freed under a lock. An entry survives eviction for as long as a
/// response being written still holds it.
///
/// Ownership: owned by `main`, shared by reference. Thread-safety: every member may be called
/// concurrently from any thread.
class sharded_cache {
public:
    /// Throws std::invalid_argument unless o.shards is a power of two (startup only).
    explicit sharded_cache(const options& o);
    ~sharded_cache();

    sharded_cache(const sharded_cache&) = delete;
    sharded_cache& operator=(const sharded_cache&) = delete;

    /// The entry under `k`, marked recently used, or nullptr. An entry that classifies as
    /// expired at `now` (past stale_if_error_until) is removed and reported as a miss.
    /// Takes a view, so a lookup by the request's own bytes allocates nothing.
    std::shared_ptr<const entry> get(key_view k, time_point now);
    std::shared_ptr<const entry> get(key_view k) { return get(k, clock::now()); }

    /// Stores `e` under e->key(), replacing a previous entry. Returns false if `e` is too
    /// heavy (see `lru::put`: a previous entry under that key is removed then as well).
    bool put(std::shared_ptr<const entry> e);

    /// The generation of `k`: changes whenever `k` or its account is erased (or the cache
    /// cleared), whether or not an entry was there. Read it before fetching what will be
    /// stored under `k`, and store with `put_if_current`, so that a purge during the fetch
    /// wins: the fetch's answer, possibly older than the purge, is not stored.
    std::uint64_t generation(key_view k) const;

    /// Every key's generation at one moment, for a fetch that learns its keys only from the
    /// answer (a listing page): taken before the call, `of(k)` is what `generation(k)` was
    /// then. A copy of the counters (512 bytes a shard); each shard is read under its lock.
    class generations {
    public:
        std::uint64_t of(key_view k) const noexcept;

    private:
        friend class sharded_cache;
        const sharded_cache* cache_ = nullptr;
        std::vector<std::uint32_t> counters_;  // per shard: 64 key slots, then 64 accounts
    };
    generations all_generations() const;

    /// `put`, unless the generation of e->key() is no longer `generation` (then nothing is
    /// stored or removed, and false is returned). Checked under the shard's lock, so a purge
    /// is either before it (refused) or after it (the stored entry is removed).
    bool put_if_current(std::shared_ptr<const entry> e, std::uint64_t generation);

    /// Changes the generation of `k` without touching its entry: a fetch that read the
    /// generation before stores nothing (put_if_current refuses it). Returns the new
    /// generation. For a write through the gateway, right before its upstream call.
    std::uint64_t fence(key_view k);

    /// `put_if_current`, and in the same step (under the shard's lock) the generation of
    /// e->key() changes as with fence(): no fetch that read an earlier generation stores
    /// after it. For the result of a write through the gateway. False when nothing was stored
    /// (the generation had changed: a purge or another write came first; or `e` is too heavy,
    /// and a previous entry under the key is then removed as by `put`).
    bool replace_if_current(std::shared_ptr<const entry> e, std::uint64_t generation);

    /// Removes the entry under `k`; true if there was one. Changes its generation.
    bool erase(key_view k);

    /// Removes every entry of `account`; returns how many. Visits all shards. Changes the
    /// generation of every key of the account.
    std::size_t erase_account(std::string_view account);

    /// Removes everything. Changes every generation.
    void clear();

    stats snapshot() const noexcept;

    std::uint32_t shard_count() const noexcept { return shard_mask_ + 1; }
    std::uint32_t shard_index(key_view k) const noexcept;
    shard_stats shard_snapshot(std::uint32_t index) const;

private:
    struct shard;

    // Applies a change to one shard under its mutex; defined in the .cpp, its only user.
    template <class Change>
    auto update(shard& s, Change&& change);
    // put_if_current and replace_if_current: `fence_key` also changes the key's generation.
    bool put_checked(std::shared_ptr<const entry> e, std::uint64_t generation, bool fence_key);

    std::uint32_t shard_mask_ = 0;
    std::vector<std::unique_ptr<shard>> shards_;  // shard_mask_ + 1; immutable after construction

    std::atomic<std::uint64_t> hits_{0};
    std::atomic<std::uint64_t> misses_{0};
    std::atomic<std::uint64_t> inserts_{0};
    std::atomic<std::uint64_t> evictions_{0};
    std::atomic<std::uint64_t> rejected_too_large_{0};
    std::atomic<std::uint64_t> purge_raced_{0};
    std::atomic<std::uint64_t> bytes_{0};
    std::atomic<std::uint64_t> entries_{0};
};

}  // namespace imagegate::cache
