// cache::sharded_cache: budgets per shard, distribution, erase paths, expiry on get, stats,
// and a short multi-threaded hammer for TSan.
#include "cache/sharded_cache.hpp"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace imagegate::cache {
namespace {

using std::chrono::seconds;

const time_point t0 = time_point{} + std::chrono::hours(1000);
const std::string account_a = "023e105f4ecef8ad9ca31a8372d0c353";
const std::string account_b = "f037e56e89293a057740de681ac9abbe";

std::string image_id(std::uint64_t i) {
    return "2cdc28f0-017a-49c4-9ed7-" + std::to_string(100000000000 + i);
}

std::shared_ptr<const entry> make(const key& k, std::size_t body_bytes = 100,
                                  clock::duration ttl = seconds(60),
                                  clock::duration sie = seconds(0)) {
    return make_entry(
        {.key = k, .body = std::string(body_bytes, 'x'), .stored_at = t0, .ttl = ttl, .sie = sie});
}

std::uint64_t sum_of_shards(const sharded_cache& c, std::uint64_t shard_stats::*field) {
    std::uint64_t sum = 0;
    for (std::uint32_t i = 0; i < c.shard_count(); ++i) {
        sum += c.shard_snapshot(i).*field;
    }
    return sum;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sharded_cache_tests)

BOOST_AUTO_TEST_CASE(shards_must_be_a_power_of_two) {
    BOOST_CHECK_THROW(sharded_cache({.max_bytes = 1000, .shards = 0}), std::invalid_argument);
    BOOST_CHECK_THROW(sharded_cache({.max_bytes = 1000, .shards = 12}), std::invalid_argument);
    BOOST_CHECK_NO_THROW(sharded_cache({.max_bytes = 1000, .shards = 1}));
    BOOST_TEST(sharded_cache({.max_bytes = 1000, .shards = 64}).shard_count() == 64u);
}

BOOST_AUTO_TEST_CASE(shard_budgets_sum_to_the_total) {
    const sharded_cache c({.max_bytes = 1'000'003, .shards = 16});
    BOOST_TEST(sum_of_shards(c, &shard_stats::max_bytes) == 1'000'003u);
    BOOST_TEST(c.shard_snapshot(0).max_bytes == 62'501u);
    BOOST_TEST(c.shard_snapshot(15).max_bytes == 62'500u);
}

BOOST_AUTO_TEST_CASE(keys_spread_over_shards) {
    sharded_cache c({.max_bytes = std::uint64_t{1} << 30, .shards = 16});
    constexpr std::uint64_t n = 4096;
    for (std::uint64_t i = 0; i < n; ++i) {
        BOOST_TEST_REQUIRE(c.put(make(key(i % 2 ? account_a : account_b, image_id(i)), 10)));
    }
    BOOST_TEST(c.snapshot().entries == n);
    for (std::uint32_t i = 0; i < c.shard_count(); ++i) {
        const auto entries = c.shard_snapshot(i).entries;
        BOOST_TEST_CONTEXT("shard " << i) {
            BOOST_TEST(entries > n / 16 / 2);
            BOOST_TEST(entries < n / 16 * 3 / 2);
        }
    }
    const key k(account_a, image_id(7));
    BOOST_TEST(c.shard_index(k) < c.shard_count());
}

BOOST_AUTO_TEST_CASE(get_put_erase_and_stats) {
    sharded_cache c({.max_bytes = 1 << 20, .shards = 4});
    const key k(account_a, image_id(1));
    BOOST_TEST(c.get(k, t0) == nullptr);
    const auto e = make(k);
    BOOST_TEST(c.put(e));
    const auto hit = c.get(k, t0);
    BOOST_TEST(hit == e);
    BOOST_TEST(c.erase(k));
    BOOST_TEST(!c.erase(k));
    BOOST_TEST(c.get(k, t0) == nullptr);
    BOOST_TEST(c.snapshot() == (stats{.hits = 1, .misses = 2, .inserts = 1}));
    BOOST_TEST(hit->body().size() == 100u);  // still alive after leaving the cache

    // Replacing swaps the entry and keeps one entry's bytes.
    c.put(make(k, 100));
    const auto newer = make(k, 300);
    c.put(newer);
    BOOST_TEST(c.get(k, t0) == newer);
    BOOST_TEST(c.snapshot().entries == 1u);
    BOOST_TEST(c.snapshot().bytes == charged_bytes(*newer));
    BOOST_TEST(!c.put(nullptr));
}

BOOST_AUTO_TEST_CASE(erase_account_removes_only_that_account) {
    sharded_cache c({.max_bytes = 1 << 22, .shards = 8});
    for (std::uint64_t i = 0; i < 100; ++i) {
        c.put(make(key(account_a, image_id(i))));
        c.put(make(key(account_b, image_id(i))));
    }
    BOOST_TEST(c.erase_account(account_a) == 100u);
    BOOST_TEST(c.erase_account(account_a) == 0u);
    BOOST_TEST(c.snapshot().entries == 100u);
    BOOST_TEST(c.get(key(account_a, image_id(5)), t0) == nullptr);
    BOOST_TEST(c.get(key(account_b, image_id(5)), t0) != nullptr);
    BOOST_TEST(c.snapshot().bytes == sum_of_shards(c, &shard_stats::bytes));
    c.clear();
    BOOST_TEST(c.snapshot().entries == 0u);
    BOOST_TEST(c.snapshot().bytes == 0u);
}

BOOST_AUTO_TEST_CASE(expired_past_stale_if_error_is_a_miss) {
    sharded_cache c({.max_bytes = 1 << 20, .shards = 2});
    const key k(account_a, image_id(1));
    c.put(make(k, 100, seconds(1), seconds(2)));
    // Stale but inside stale-if-error: still returned, the caller classifies it.
    const auto stale = c.get(k, t0 + std::chrono::milliseconds(2'999));
    BOOST_TEST_REQUIRE(stale != nullptr);
    BOOST_TEST(stale->classify(t0 + std::chrono::milliseconds(2'999)) == freshness::stale_if_error);
    // At stale_if_error_until: dropped and counted as a miss.
    BOOST_TEST(c.get(k, t0 + seconds(3)) == nullptr);
    BOOST_TEST(c.snapshot() == (stats{.hits = 1, .misses = 1, .inserts = 1}));
}

BOOST_AUTO_TEST_CASE(byte_budget_holds_under_fill) {
    constexpr std::uint64_t budget = 1 << 20;
    sharded_cache c({.max_bytes = budget, .shards = 16});
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::size_t> body(100, 600);
    for (std::uint64_t i = 0; i < 10'000; ++i) {
        BOOST_TEST_REQUIRE(c.put(make(key(account_a, image_id(i)), body(rng))));
        BOOST_TEST_REQUIRE(c.snapshot().bytes <= budget);
    }
    const stats s = c.snapshot();
    BOOST_TEST(s.evictions > 0u);
    BOOST_TEST(s.inserts == 10'000u);
    BOOST_TEST(s.entries + s.evictions == 10'000u);
    BOOST_TEST(s.bytes == sum_of_shards(c, &shard_stats::bytes));
    BOOST_TEST(s.entries == sum_of_shards(c, &shard_stats::entries));
    for (std::uint32_t i = 0; i < c.shard_count(); ++i) {
        BOOST_TEST(c.shard_snapshot(i).bytes <= c.shard_snapshot(i).max_bytes);
    }
}

BOOST_AUTO_TEST_CASE(max_entries_and_too_large) {
    sharded_cache c(
        {.max_bytes = 1 << 20, .max_entries = 8, .max_entry_bytes = 2'000, .shards = 4});
    for (std::uint64_t i = 0; i < 100; ++i) {
        c.put(make(key(account_a, image_id(i)), 10));
    }
    BOOST_TEST(c.snapshot().entries <= 8u);
    BOOST_TEST(sum_of_shards(c, &shard_stats::entries) <= 8u);

    const key big(account_b, image_id(1));
    BOOST_TEST(!c.put(make(big, 5'000)));
    BOOST_TEST(c.get(big, t0) == nullptr);
    BOOST_TEST(c.snapshot().rejected_too_large == 1u);
}

// The memory target: a realistic record (590-byte body, 36-character image id,
// 32-character account) is charged at most 256 bytes beyond its body, index included.
BOOST_AUTO_TEST_CASE(realistic_entry_overhead_is_at_most_256_bytes) {
    const key k(account_a, "2cdc28f0-017a-49c4-9ed7-87056c83901a");
    BOOST_TEST_REQUIRE(k.image_id().size() == 36u);
    BOOST_TEST_REQUIRE(k.account().size() == 32u);
    const auto e = make(k, 590);
    const std::uint64_t overhead = charged_bytes(*e) - 590;
    BOOST_TEST_MESSAGE("charged " << charged_bytes(*e) << " bytes, overhead " << overhead);
    BOOST_TEST(overhead <= 256u);
    // Pinned, so a layout change that costs bytes shows up here.
    BOOST_TEST(overhead == 213u);
    sharded_cache c({.max_bytes = 1 << 20, .shards = 1});
    BOOST_TEST(c.put(e));
    BOOST_TEST(c.snapshot().bytes == charged_bytes(*e));
}

// The index is keyed by the bytes inside each entry: erase, erase_account and eviction must
// find and drop exactly the right entries, including after the table has grown and entries
// have been moved around by removals.
BOOST_AUTO_TEST_CASE(erase_erase_account_and_eviction_through_the_index) {
    const std::uint64_t charge = charged_bytes(*make(key(account_a, image_id(0)), 200));
    constexpr std::uint64_t n = 3'000;
    sharded_cache c({.max_bytes = charge * n, .shards = 1});
    for (std::uint64_t i = 0; i < n; ++i) {
        BOOST_TEST_REQUIRE(c.put(make(key(i % 3 ? account_a : account_b, image_id(i)), 200)));
    }
    BOOST_TEST_REQUIRE(c.snapshot().entries == n);
    BOOST_TEST(c.snapshot().evictions == 0u);

    // erase: the exact key only; a key equal in bytes but split differently is another key.
    BOOST_TEST(c.erase(key(account_a, image_id(1))));
    BOOST_TEST(!c.erase(key(account_a, image_id(1))));
    BOOST_TEST(!c.erase(key(account_b, image_id(1))));
    BOOST_TEST(c.get(key(account_a, image_id(2)), t0) != nullptr);
    BOOST_TEST(c.get(key(account_a, image_id(1)), t0) == nullptr);

    // erase_account: every entry of account_b (i % 3 == 0), nothing else.
    BOOST_TEST(c.erase_account(account_b) == n / 3);
    BOOST_TEST(c.snapshot().entries == n - 1 - n / 3);
    for (std::uint64_t i = 0; i < n; ++i) {
        const bool expected = i % 3 != 0 && i != 1;
        const key k(i % 3 ? account_a : account_b, image_id(i));
        BOOST_TEST_REQUIRE((c.get(k, t0) != nullptr) == expected);
    }

    // Eviction: the budget is full again after n / 3 + 1 puts; the gets above touched the
    // survivors in index order, so the oldest are the lowest ids and go first.
    const auto held = c.get(key(account_a, image_id(2)), t0);  // now most recently used
    for (std::uint64_t i = n; i < n + n / 3 + 1; ++i) {
        BOOST_TEST_REQUIRE(c.put(make(key(account_b, image_id(i)), 200)));
    }
    BOOST_TEST(c.snapshot().evictions == 0u);
    BOOST_TEST_REQUIRE(c.put(make(key(account_b, image_id(n + n / 3 + 1)), 200)));
    BOOST_TEST(c.snapshot().evictions == 1u);
    BOOST_TEST(c.get(key(account_a, image_id(4)), t0) == nullptr);  // oldest survivor
    BOOST_TEST(c.get(key(account_a, image_id(5)), t0) != nullptr);
    BOOST_TEST(c.get(key(account_a, image_id(2)), t0) == held);
    BOOST_TEST(c.snapshot().bytes <= charge * n);
    BOOST_TEST(c.snapshot().bytes == c.snapshot().entries * charge);

    // The same entry put again replaces itself; still one entry.
    const std::uint64_t entries = c.snapshot().entries;
    BOOST_TEST(c.put(held));
    BOOST_TEST(c.snapshot().entries == entries);
    BOOST_TEST(c.get(key(account_a, image_id(2)), t0) == held);
    c.clear();
    BOOST_TEST(c.snapshot().entries == 0u);
    BOOST_TEST(c.snapshot().bytes == 0u);
    BOOST_TEST(held->key().image_id() == image_id(2));  // alive while held
}

// 4 threads of mixed get/put/erase over a small key space and a budget that forces
// evictions; the invariants are checked while it runs and after. Built for TSan.
BOOST_AUTO_TEST_CASE(hammer) {
    constexpr std::uint64_t budget = 64 * 1024;
    sharded_cache c({.max_bytes = budget, .shards = 4});
    std::atomic<bool> over_budget{false};
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < 4; ++t) {
        threads.emplace_back([&c, &over_budget, t] {
            std::mt19937 rng(t);
            std::uniform_int_distribution<std::uint64_t> pick(0, 255);
            std::uniform_int_distribution<int> op(0, 99);
            for (int i = 0; i < 5'000; ++i) {
                const key k(pick(rng) % 2 ? account_a : account_b, image_id(pick(rng)));
                const int o = op(rng);
                if (o < 60) {
                    if (const auto e = c.get(k, t0)) {
                        // Read the shared bytes: TSan checks they are not written meanwhile.
                        if (e->body().front() != 'x' || !(e->key() == k)) {
                            over_budget = true;
                        }
                    }
                } else if (o < 80) {
                    c.put(make(k, 50 + pick(rng) * 4));
                } else if (o < 90) {
                    const auto g = c.generation(k);
                    c.put_if_current(make(k, 50 + pick(rng) * 4), g);
                } else if (o < 99) {
                    c.erase(k);
                } else {
                    c.erase_account(account_b);
                }
                if (c.snapshot().bytes > budget) {
                    over_budget = true;
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    BOOST_TEST(!over_budget.load());
    const stats s = c.snapshot();
    BOOST_TEST(s.bytes <= budget);
    BOOST_TEST(s.bytes == sum_of_shards(c, &shard_stats::bytes));
    BOOST_TEST(s.entries == sum_of_shards(c, &shard_stats::entries));
    BOOST_TEST(s.hits + s.misses > 0u);
}

// A fetch reads the key's generation before it calls the upstream and stores with
// put_if_current: any purge of the key or its account in between wins, even one that found
// nothing to erase (the fetch of a key not cached yet).
BOOST_AUTO_TEST_CASE(a_purge_wins_over_a_fetch_that_began_before_it) {
    struct row {
        const char* purge;
        void (*run)(sharded_cache&, const key&);
    };
    const row rows[] = {
        {"erase the key", [](sharded_cache& c, const key& k) { c.erase(k); }},
        {"erase the account", [](sharded_cache& c, const key& k) { c.erase_account(k.account()); }},
        {"clear", [](sharded_cache& c, const key&) { c.clear(); }},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.purge) {
            sharded_cache c({.max_bytes = 1 << 20, .shards = 16});
            const key k(account_a, image_id(1));
            for (const bool cached : {false, true}) {
                if (cached) {
                    BOOST_TEST(c.put(make(k)));
                }
                const std::uint64_t before = c.generation(k);
                r.run(c, k);
                BOOST_TEST(c.generation(k) != before);
                BOOST_TEST(!c.put_if_current(make(k), before));
                BOOST_TEST(!c.get(k, t0));
                // A fetch that began after the purge stores.
                BOOST_TEST(c.put_if_current(make(k), c.generation(k)));
                BOOST_TEST(c.get(k, t0) != nullptr);
                c.erase(k);
            }
            BOOST_TEST(c.snapshot().purge_raced == 2u);
        }
    }
}

// A listing page's keys are known only from its answer: the snapshot taken before the call
// gives every key the generation it had then, so a purge during the call still wins.
BOOST_AUTO_TEST_CASE(a_generations_snapshot_is_every_key_generation_before_a_purge) {
    sharded_cache c({.max_bytes = 1 << 20, .shards = 16});
    for (int i = 0; i < 200; ++i) {
        const key k(i % 2 ? account_a : account_b, image_id(i));
        if (i % 3 == 0) {
            c.erase(k);  // some slots moved on before the snapshot
        }
    }
    const auto snap = c.all_generations();
    for (int i = 0; i < 200; ++i) {
        const key k(i % 2 ? account_a : account_b, image_id(i));
        BOOST_TEST(snap.of(k) == c.generation(k));
    }
    const key purged(account_a, image_id(1));
    const key other(account_b, image_id(2));
    c.erase_account(account_a);
    BOOST_TEST(!c.put_if_current(make(purged), snap.of(purged)));
    // Another account's key stores unless it shares the purged account's counter slot.
    const bool untouched = c.generation(other) == snap.of(other);
    BOOST_TEST(c.put_if_current(make(other), snap.of(other)) == untouched);
}

BOOST_AUTO_TEST_CASE(puts_and_gets_leave_generations_alone) {
    sharded_cache c({.max_bytes = 1 << 20, .shards = 4});
    const key k(account_a, image_id(7));
    const std::uint64_t g = c.generation(k);
    BOOST_TEST(c.put(make(k)));
    BOOST_TEST(c.get(k, t0) != nullptr);
    BOOST_TEST(c.put_if_current(make(k), g));
    BOOST_TEST(c.generation(k) == g);
    BOOST_TEST(c.snapshot().purge_raced == 0u);
}

// Generations are kept per slot (64 per shard for keys, 64 for accounts), so purges of other
// keys and accounts only rarely keep a fetch from being stored: with 16 shards, a key purge
// collides with 1/1024 of the keys, an account purge with 1/64 of the accounts.
BOOST_AUTO_TEST_CASE(purges_of_other_keys_rarely_refuse_a_store) {
    sharded_cache c({.max_bytes = 1 << 20, .shards = 16});
    const key k(account_a, image_id(1));
    int refused_by_keys = 0;
    for (std::uint64_t i = 2; i < 202; ++i) {
        const auto g = c.generation(k);
        c.erase(key(account_a, image_id(i)));
        refused_by_keys += c.put_if_current(make(k), g) ? 0 : 1;
    }
    int refused_by_accounts = 0;
    for (int i = 0; i < 64; ++i) {
        const auto g = c.generation(k);
        c.erase_account("0000000000000000000000000000" + std::to_string(1000 + i));
        refused_by_accounts += c.put_if_current(make(k), g) ? 0 : 1;
    }
    BOOST_TEST(refused_by_keys <= 5);      // about 0.2 expected
    BOOST_TEST(refused_by_accounts <= 8);  // about 1 expected
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::cache
