// fence() and replace_if_current(): how a write through the gateway keeps fetches that began
// before it (or while it ran) from storing the old record, without dropping the entry first.
#include "cache/sharded_cache.hpp"

#include <boost/test/unit_test.hpp>

#include <string>

namespace imagegate::cache {
namespace {

const time_point t0 = time_point{} + std::chrono::hours(1000);
const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";

std::shared_ptr<const entry> record(const key& k, std::string body) {
    return make_entry({.key = k, .body = body, .stored_at = t0, .ttl = std::chrono::seconds(60)});
}

std::string body_of(sharded_cache& c, const key& k) {
    const auto e = c.get(k, t0);
    return e ? std::string(e->body()) : std::string("<none>");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(write_fences)

BOOST_AUTO_TEST_CASE(a_fence_keeps_the_entry_and_refuses_earlier_fetches) {
    sharded_cache c({.max_bytes = 1 << 20, .shards = 4});
    const key k(account, "img");
    BOOST_TEST(c.put(record(k, "old")));
    const auto fetch_began = c.generation(k);
    const auto fenced = c.fence(k);
    BOOST_TEST(fenced != fetch_began);
    BOOST_TEST(fenced == c.generation(k));
    BOOST_TEST(body_of(c, k) == "old");  // still answered while the write runs
    BOOST_TEST(!c.put_if_current(record(k, "stale fill"), fetch_began));
    BOOST_TEST(body_of(c, k) == "old");
    BOOST_TEST(c.snapshot().purge_raced == 1u);
}

// The read/write race: a fill that began before the write, and one that began while it was in
// flight (it may carry the old record), both finish after the write: neither stores.
BOOST_AUTO_TEST_CASE(no_fill_from_before_the_write_stores_after_it) {
    for (const bool cached : {false, true}) {
        BOOST_TEST_CONTEXT("cached " << cached) {
            sharded_cache c({.max_bytes = 1 << 20, .shards = 4});
            const key k(account, "img");
            if (cached) {
                BOOST_TEST(c.put(record(k, "old")));
            }
            const auto before_write = c.generation(k);
            const auto ticket = c.fence(k);             // begin()
            const auto during_write = c.generation(k);  // a fill starting mid-write
            BOOST_TEST(c.replace_if_current(record(k, "new"), ticket));  // finish()
            BOOST_TEST(!c.put_if_current(record(k, "old"), before_write));
            BOOST_TEST(!c.put_if_current(record(k, "old"), during_write));
            BOOST_TEST(body_of(c, k) == "new");
            // A fill that starts after the write stores as usual.
            BOOST_TEST(c.put_if_current(record(k, "later"), c.generation(k)));
            BOOST_TEST(body_of(c, k) == "later");
        }
    }
}

BOOST_AUTO_TEST_CASE(a_purge_or_another_write_in_between_wins) {
    struct row {
        const char* between;
        void (*run)(sharded_cache&, const key&);
    };
    const row rows[] = {
        {"erase", [](sharded_cache& c, const key& k) { c.erase(k); }},
        {"erase_account", [](sharded_cache& c, const key& k) { c.erase_account(k.account()); }},
        {"another write", [](sharded_cache& c, const key& k) { c.fence(k); }},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.between) {
            sharded_cache c({.max_bytes = 1 << 20, .shards = 4});
            const key k(account, "img");
            BOOST_TEST(c.put(record(k, "old")));
            const auto ticket = c.fence(k);
            r.run(c, k);
            const auto now = c.generation(k);
            BOOST_TEST(!c.replace_if_current(record(k, "new"), ticket));
            BOOST_TEST(c.generation(k) == now);  // a refused replace changes nothing
            BOOST_TEST(body_of(c, k) != "new");
        }
    }
}

BOOST_AUTO_TEST_CASE(a_replace_too_heavy_stores_nothing_and_drops_the_old_entry) {
    sharded_cache c({.max_bytes = 1 << 20, .max_entry_bytes = 1024, .shards = 1});
    const key k(account, "img");
    BOOST_TEST(c.put(record(k, "old")));
    const auto ticket = c.fence(k);
    BOOST_TEST(!c.replace_if_current(record(k, std::string(4096, 'x')), ticket));
    BOOST_TEST(body_of(c, k) == "<none>");
    BOOST_TEST(c.generation(k) != ticket);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::cache
