// The hit path's lookup: a request target routed to views and looked up in the cache by
// (account, canonical id) views, without allocating. A counting global operator new makes
// the allocation count observable (instruction-count and allocation tests are exact; no
// timing).
#include "cache/entry.hpp"
#include "cache/sharded_cache.hpp"
#include "gateway/image/route.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <ostream>
#include <string>

namespace {

std::atomic<std::size_t> allocations{0};

}  // namespace

// Replacing the global allocation functions counts every allocation of this test binary.
// They pair malloc with free; GCC cannot see that once it inlines them into callers.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace ig = imagegate;
namespace gw = imagegate::gateway;
namespace cache = imagegate::cache;
namespace bdata = boost::unit_test::data;

namespace {

const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";
const cache::time_point t0 = cache::time_point{} + std::chrono::hours(1000);

struct lookup_case {
    std::string target;        // as the client sent it
    std::string canonical_id;  // what the entry is stored under
    bool allocation_free;      // routing and lookup allocate nothing
};

std::ostream& operator<<(std::ostream& os, const lookup_case& c) { return os << c.target; }

const lookup_case lookup_cases[] = {
    // Generated ids and plain custom ids: views into the target.
    {"/client/v4/accounts/" + account + "/images/v1/083eb7b2-5392-4565-b69e-aff66acddd00",
     "083eb7b2-5392-4565-b69e-aff66acddd00", true},
    {"/accounts/" + account + "/images/v1/abc?x=1", "abc", true},
    {"/accounts/" + account + "/images/v1/a.b_c~d-e", "a.b_c~d-e", true},
    // Ids that need decoding or re-encoding own their bytes, and still find the entry.
    {"/accounts/" + account + "/images/v1/a%2fb", "a%2Fb", false},
    {"/accounts/" + account + "/images/v1/%61bc", "abc", false},
    {"/accounts/" + account + "/images/v1/a!b", "a%21b", false},
};

std::shared_ptr<const cache::entry> make(std::string_view id) {
    return cache::make_entry({.key = cache::key(account, id),
                              .body = "{\"success\":true}",
                              .stored_at = t0,
                              .ttl = std::chrono::seconds(60)});
}

}  // namespace

BOOST_AUTO_TEST_SUITE(hit_lookup)

BOOST_DATA_TEST_CASE(lookup_by_target_views, bdata::make(lookup_cases), c) {
    cache::sharded_cache store({.max_bytes = 1 << 20, .shards = 4});
    const auto stored = make(c.canonical_id);
    BOOST_TEST(store.put(stored));
    BOOST_TEST(store.put(make("other")));

    const std::size_t before = allocations.load();
    const gw::image_target route = gw::parse_image_target(c.target);
    const auto found = store.get(route.key(), t0);
    const std::size_t allocated = allocations.load() - before;

    BOOST_TEST(route.ok());
    BOOST_TEST((found == stored));
    if (c.allocation_free) {
        BOOST_TEST(allocated == 0u);
    }
}

// Views whose parts are not adjacent in memory find the entry whose key is stored joined;
// moving bytes between the parts never finds it.
BOOST_AUTO_TEST_CASE(heterogeneous_lookup_compares_parts) {
    cache::sharded_cache store({.max_bytes = 1 << 20, .shards = 1});
    const auto ab_c = cache::make_entry(
        {.key = cache::key("ab", "c"), .stored_at = t0, .ttl = std::chrono::seconds(60)});
    const auto a_bc = cache::make_entry(
        {.key = cache::key("a", "bc"), .stored_at = t0, .ttl = std::chrono::seconds(60)});
    BOOST_TEST(store.put(ab_c));
    BOOST_TEST(store.put(a_bc));
    const std::string target = "x/ab/images/c/a/bc";
    const std::string_view t(target);
    BOOST_TEST((store.get(cache::key_view(t.substr(2, 2), t.substr(12, 1)), t0) == ab_c));
    BOOST_TEST((store.get(cache::key_view(t.substr(14, 1), t.substr(16, 2)), t0) == a_bc));
    BOOST_TEST(!store.get(cache::key_view("abc", ""), t0));
    BOOST_TEST(cache::key_hash{}(cache::key_view("ab", "c")) ==
               cache::key_hash{}(cache::key("ab", "c")));
    BOOST_TEST(store.erase(cache::key_view(t.substr(2, 2), t.substr(12, 1))));
    BOOST_TEST(!store.get(cache::key("ab", "c"), t0));
}

BOOST_AUTO_TEST_SUITE_END()
