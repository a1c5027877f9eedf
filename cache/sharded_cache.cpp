#include "cache/sharded_cache.hpp"

#include <array>
#include <bit>
#include <limits>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <utility>

namespace imagegate::cache {
namespace {

// Indexes entries by a view of the key bytes stored inside each entry, so the key is kept
// once per entry.
struct entry_traits {
    using key_type = key_view;
    static key_view key_of(const std::shared_ptr<const entry>& e) noexcept { return e->key(); }
    static std::size_t hash(key_view k) noexcept { return key_hash{}(k); }
    static std::uint64_t weight(const std::shared_ptr<const entry>& e) noexcept {
        return charged_bytes(*e);
    }
};

using shard_lru = lru<std::shared_ptr<const entry>, entry_traits>;

// Splits `total` over `n` parts; the parts sum to exactly `total`.
std::uint64_t part(std::uint64_t total, std::uint32_t n, std::uint32_t i) noexcept {
    return total / n + (i < total % n ? 1 : 0);
}

// Generations (see sharded_cache::generation): per shard, 64 counters for the keys that hash
// to it and 64 for accounts, so memory is fixed (512 bytes a shard) whatever the number of
// keys and purges, and the hit path never reads them. A key shares its counter with the
// other keys of its slot: a purge of one of them also keeps a concurrent fetch of another
// from being stored, which costs that key one more upstream call later, never a wrong
// answer. With 16 shards a key purge touches 1/1024 of the key space, an account purge 1/64
// of the accounts. 32-bit counters: only equality matters, and no fetch outlives 2^32
// purges of one slot.
constexpr std::size_t generation_slots = 64;

std::size_t key_slot(std::size_t hash) noexcept {
    // The shard index takes the low bits; these are independent of them.
    return (hash >> 32) & (generation_slots - 1);
}

std::size_t account_slot(std::string_view account) noexcept {
    return std::hash<std::string_view>{}(account) & (generation_slots - 1);
}

}  // namespace

// Padded to a cache line so neighbouring shards' mutexes do not share one.
struct alignas(64) sharded_cache::shard {
    explicit shard(const lru_limits& limits) : lru_(limits) {}

    // Requires mu_ held.
    std::uint64_t generation(key_view k) const noexcept {
        return (std::uint64_t{key_generations_[key_slot(key_hash{}(k))]} << 32) |
               account_generations_[account_slot(k.account())];
    }

    mutable std::mutex mu_;
    shard_lru lru_;                                                      // guarded by mu_
    std::array<std::uint32_t, generation_slots> key_generations_{};      // guarded by mu_
    std::array<std::uint32_t, generation_slots> account_generations_{};  // guarded by mu_
};

std::uint64_t charged_bytes(const entry& e) noexcept {
    return e.bytes() + shard_lru::index_bytes_per_value;
}

sharded_cache::sharded_cache(const options& o) {
    if (o.shards == 0 || !std::has_single_bit(o.shards)) {
        throw std::invalid_argument("cache shards must be a power of two");
    }
    shard_mask_ = o.shards - 1;
    shards_.reserve(o.shards);
    for (std::uint32_t i = 0; i < o.shards; ++i) {
        lru_limits limits{.max_bytes = part(o.max_bytes, o.shards, i)};
        if (o.max_entries != 0) {
            limits.max_entries = part(o.max_entries, o.shards, i);
        }
        if (o.max_entry_bytes != 0) {
            limits.max_entry_bytes = o.max_entry_bytes;
        }
        shards_.push_back(std::make_unique<shard>(limits));
    }
}

sharded_cache::~sharded_cache() = default;

std::uint32_t sharded_cache::shard_index(key_view k) const noexcept {
    // The shard's table places keys by the high bits of a multiplicative hash of the same
    // value, so it is not hurt by all its keys sharing these low bits.
    return static_cast<std::uint32_t>(key_hash{}(k)) & shard_mask_;
}

// Runs `change(lru)` under the shard's mutex and publishes the occupancy change to the
// gauges. Whatever `change` returns (the values that left the shard) is handed back and so
// destroyed by the caller after the mutex is unlocked.
template <class Change>
auto sharded_cache::update(shard& s, Change&& change) {
    const std::lock_guard lock(s.mu_);
    const std::uint64_t bytes_before = s.lru_.bytes();
    const std::uint64_t entries_before = s.lru_.size();
    auto result = std::forward<Change>(change)(s.lru_);
    // Unsigned wrap-around turns a decrease into the matching subtraction. Each shard adds
    // its own net change, so the gauge is always a sum of states each within a shard budget.
    bytes_.fetch_add(s.lru_.bytes() - bytes_before, std::memory_order_relaxed);
    entries_.fetch_add(s.lru_.size() - entries_before, std::memory_order_relaxed);
    return result;
}

std::shared_ptr<const entry> sharded_cache::get(key_view k, time_point now) {
    struct lookup {
        std::shared_ptr<const entry> found;
        std::optional<std::shared_ptr<const entry>> dropped;  // expired, removed
    };
    lookup l = update(*shards_[shard_index(k)], [&](shard_lru& lru) {
        lookup out;
        if (auto* value = lru.get(k)) {
            if ((*value)->classify(now) == freshness::expired) {
                out.dropped = lru.erase(k);
            } else {
                out.found = *value;
            }
        }
        return out;
    });
    (l.found ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
    return std::move(l.found);  // l.dropped is released here, after the unlock
}

bool sharded_cache::put(std::shared_ptr<const entry> e) {
    if (!e) {
        return false;
    }
    shard& s = *shards_[shard_index(e->key())];
    const auto result = update(s, [&](shard_lru& lru) { return lru.put(std::move(e)); });
    (result.stored ? inserts_ : rejected_too_large_).fetch_add(1, std::memory_order_relaxed);
    if (!result.evicted.empty()) {
        evictions_.fetch_add(result.evicted.size(), std::memory_order_relaxed);
    }
    return result.stored;
}

std::uint64_t sharded_cache::generation(key_view k) const {
    const shard& s = *shards_[shard_index(k)];
    const std::lock_guard lock(s.mu_);
    return s.generation(k);
}

sharded_cache::generations sharded_cache::all_generations() const {
    generations g;
    g.cache_ = this;
    g.counters_.reserve(shards_.size() * 2 * generation_slots);
    for (const auto& s : shards_) {
        const std::lock_guard lock(s->mu_);
        g.counters_.insert(g.counters_.end(), s->key_generations_.begin(),
                           s->key_generations_.end());
        g.counters_.insert(g.counters_.end(), s->account_generations_.begin(),
                           s->account_generations_.end());
    }
    return g;
}

std::uint64_t sharded_cache::generations::of(key_view k) const noexcept {
    const std::size_t base = std::size_t{cache_->shard_index(k)} * 2 * generation_slots;
    return (std::uint64_t{counters_[base + key_slot(key_hash{}(k))]} << 32) |
           counters_[base + generation_slots + account_slot(k.account())];
}

bool sharded_cache::put_if_current(std::shared_ptr<const entry> e, std::uint64_t generation) {
    return put_checked(std::move(e), generation, false);
}

bool sharded_cache::replace_if_current(std::shared_ptr<const entry> e, std::uint64_t generation) {
    return put_checked(std::move(e), generation, true);
}

bool sharded_cache::put_checked(std::shared_ptr<const entry> e, std::uint64_t generation,
                                bool fence_key) {
    if (!e) {
        return false;
    }
    shard& s = *shards_[shard_index(e->key())];
    std::optional<shard_lru::put_result> result;
    update(s, [&](shard_lru& lru) {
        // Run under the shard's mutex, which erase() and erase_account() hold while they
        // change generations.
        if (s.generation(e->key()) == generation) {
            if (fence_key) {
                ++s.key_generations_[key_slot(key_hash{}(e->key()))];
            }
            result = lru.put(std::move(e));
        }
        return 0;
    });
    if (!result) {
        purge_raced_.fetch_add(1, std::memory_order_relaxed);
        return false;  // `e` is released here, after the unlock
    }
    (result->stored ? inserts_ : rejected_too_large_).fetch_add(1, std::memory_order_relaxed);
    if (!result->evicted.empty()) {
        evictions_.fetch_add(result->evicted.size(), std::memory_order_relaxed);
    }
    return result->stored;
}

std::uint64_t sharded_cache::fence(key_view k) {
    shard& s = *shards_[shard_index(k)];
    const std::lock_guard lock(s.mu_);
    ++s.key_generations_[key_slot(key_hash{}(k))];
    return s.generation(k);
}

bool sharded_cache::erase(key_view k) {
    shard& s = *shards_[shard_index(k)];
    return update(s,
                  [&](shard_lru& lru) {
                      ++s.key_generations_[key_slot(key_hash{}(k))];
                      return lru.erase(k);
                  })
        .has_value();
}

std::size_t sharded_cache::erase_account(std::string_view account_id) {
    std::size_t count = 0;
    const std::size_t slot = account_slot(account_id);
    for (const auto& s : shards_) {
        count += update(*s, [&](shard_lru& lru) {
                     ++s->account_generations_[slot];
                     return lru.erase_if([account_id](const std::shared_ptr<const entry>& e) {
                         return e->key().account() == account_id;
                     });
                 }).size();
    }
    return count;
}

void sharded_cache::clear() {
    for (const auto& s : shards_) {
        update(*s, [&](shard_lru& lru) {
            for (auto& g : s->key_generations_) {
                ++g;
            }
            for (auto& g : s->account_generations_) {
                ++g;
            }
            return lru.clear();
        });
    }
}

stats sharded_cache::snapshot() const noexcept {
    constexpr auto relaxed = std::memory_order_relaxed;
    return {
        .hits = hits_.load(relaxed),
        .misses = misses_.load(relaxed),
        .inserts = inserts_.load(relaxed),
        .evictions = evictions_.load(relaxed),
        .rejected_too_large = rejected_too_large_.load(relaxed),
        .purge_raced = purge_raced_.load(relaxed),
        .bytes = bytes_.load(relaxed),
        .entries = entries_.load(relaxed),
    };
}

shard_stats sharded_cache::shard_snapshot(std::uint32_t index) const {
    const shard& s = *shards_.at(index);
    const std::lock_guard lock(s.mu_);
    return {
        .bytes = s.lru_.bytes(), .entries = s.lru_.size(), .max_bytes = s.lru_.limits().max_bytes};
}

std::ostream& operator<<(std::ostream& os, const stats& s) {
    return os << "{hits=" << s.hits << " misses=" << s.misses << " inserts=" << s.inserts
              << " evictions=" << s.evictions << " rejected_too_large=" << s.rejected_too_large
              << " purge_raced=" << s.purge_raced << " bytes=" << s.bytes
              << " entries=" << s.entries << '}';
}

std::ostream& operator<<(std::ostream& os, const shard_stats& s) {
    return os << "{bytes=" << s.bytes << " entries=" << s.entries << " max_bytes=" << s.max_bytes
              << '}';
}

}  // namespace imagegate::cache
