// cache::lru: recency order, the byte and entry bounds, refusal and replacement.
#include "cache/lru.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace imagegate::cache {
namespace {

using string_lru = lru<std::string, int>;

std::vector<std::string> order(const string_lru& l) {
    std::vector<std::string> keys;
    l.for_each([&](const std::string& k, int) { keys.push_back(k); });
    return keys;
}

using keys = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_SUITE(lru_tests)

BOOST_AUTO_TEST_CASE(evicts_least_recently_used) {
    string_lru l({.max_bytes = 30});
    BOOST_TEST(l.put("a", 1, 10).stored);
    BOOST_TEST(l.put("b", 2, 10).stored);
    BOOST_TEST(l.put("c", 3, 10).stored);
    BOOST_TEST(order(l) == (keys{"a", "b", "c"}), boost::test_tools::per_element());

    // A hit moves "a" to the back, so "b" is now the oldest.
    BOOST_TEST_REQUIRE(l.get("a") != nullptr);
    BOOST_TEST(*l.get("a") == 1);
    BOOST_TEST(order(l) == (keys{"b", "c", "a"}), boost::test_tools::per_element());

    auto r = l.put("d", 4, 10);
    BOOST_TEST(r.stored);
    BOOST_TEST(r.evicted == (std::vector<int>{2}), boost::test_tools::per_element());
    BOOST_TEST(order(l) == (keys{"c", "a", "d"}), boost::test_tools::per_element());

    // peek does not touch.
    BOOST_TEST_REQUIRE(l.peek("c") != nullptr);
    r = l.put("e", 5, 20);
    BOOST_TEST(r.evicted == (std::vector<int>{3, 1}), boost::test_tools::per_element());
    BOOST_TEST(order(l) == (keys{"d", "e"}), boost::test_tools::per_element());
    BOOST_TEST(l.bytes() == 30u);
    BOOST_TEST(l.get("b") == nullptr);
}

BOOST_AUTO_TEST_CASE(byte_budget_holds_under_fill) {
    constexpr std::uint64_t budget = 100'000;
    lru<int, int> l({.max_bytes = budget});
    std::mt19937 rng(42);
    std::uniform_int_distribution<std::uint64_t> weight(1, 500);
    std::uint64_t stored_weight = 0;
    std::size_t evicted = 0;
    for (int i = 0; i < 10'000; ++i) {
        const std::uint64_t w = weight(rng);
        const auto r = l.put(i, i, w);
        BOOST_TEST_REQUIRE(r.stored);
        evicted += r.evicted.size();
        BOOST_TEST_REQUIRE(l.bytes() <= budget);
        stored_weight += w;
    }
    BOOST_TEST(evicted > 0u);
    BOOST_TEST(l.size() + evicted == 10'000u);
    // The survivors are the newest puts, and bytes() is their exact sum.
    int previous = -1;
    l.for_each([&](int k, int) {
        BOOST_TEST(k > previous);
        previous = k;
    });
    BOOST_TEST(previous == 9'999);
    l.erase_if([&](int, int) { return true; });
    BOOST_TEST(l.bytes() == 0u);
    BOOST_TEST(l.size() == 0u);
    BOOST_TEST(stored_weight > budget);
}

BOOST_AUTO_TEST_CASE(max_entries_bounds_the_count) {
    string_lru l({.max_bytes = 1'000, .max_entries = 3});
    for (int i = 0; i < 5; ++i) {
        l.put(std::to_string(i), i, 1);
        BOOST_TEST(l.size() <= 3u);
    }
    BOOST_TEST(order(l) == (keys{"2", "3", "4"}), boost::test_tools::per_element());
    // Replacing does not count as a new entry.
    const auto r = l.put("3", 33, 1);
    BOOST_TEST(r.evicted.empty());
    BOOST_TEST(r.replaced.value_or(-1) == 3);
    BOOST_TEST(l.size() == 3u);

    string_lru none({.max_bytes = 1'000, .max_entries = 0});
    BOOST_TEST(!none.put("a", 1, 1).stored);
    BOOST_TEST(none.size() == 0u);
}

BOOST_AUTO_TEST_CASE(refuses_too_heavy_values) {
    string_lru l({.max_bytes = 100, .max_entry_bytes = 40});
    BOOST_TEST(l.put("a", 1, 40).stored);
    auto r = l.put("b", 2, 41);
    BOOST_TEST(!r.stored);
    BOOST_TEST(r.evicted.empty());
    BOOST_TEST(l.size() == 1u);
    BOOST_TEST(l.bytes() == 40u);

    // Heavier than the whole budget is refused even without a per-entry limit.
    string_lru small({.max_bytes = 100});
    BOOST_TEST(small.put("x", 1, 100).stored);
    BOOST_TEST(!small.put("y", 2, 101).stored);
    BOOST_TEST(small.size() == 1u);

    // A refused newer value still removes the older one under its key.
    r = l.put("a", 10, 50);
    BOOST_TEST(!r.stored);
    BOOST_TEST(r.replaced.value_or(-1) == 1);
    BOOST_TEST(l.size() == 0u);
    BOOST_TEST(l.bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(replace_adjusts_bytes) {
    string_lru l({.max_bytes = 100});
    l.put("a", 1, 10);
    l.put("b", 2, 30);
    auto r = l.put("a", 11, 25);
    BOOST_TEST(r.stored);
    BOOST_TEST(r.replaced.value_or(-1) == 1);
    BOOST_TEST(r.evicted.empty());
    BOOST_TEST(l.bytes() == 55u);
    BOOST_TEST(order(l) == (keys{"b", "a"}), boost::test_tools::per_element());

    // Growing past the budget evicts others, never the value being replaced.
    l.put("c", 3, 40);
    r = l.put("a", 12, 70);
    BOOST_TEST(r.evicted == (std::vector<int>{2, 3}), boost::test_tools::per_element());
    BOOST_TEST(l.bytes() == 70u);
    BOOST_TEST(*l.get("a") == 12);

    // Shrinking.
    r = l.put("a", 13, 5);
    BOOST_TEST(l.bytes() == 5u);
    BOOST_TEST(l.size() == 1u);
}

BOOST_AUTO_TEST_CASE(erase_and_erase_if) {
    string_lru l({.max_bytes = 100});
    for (int i = 0; i < 6; ++i) {
        l.put("k" + std::to_string(i), i, 10);
    }
    BOOST_TEST(l.erase("k2").value_or(-1) == 2);
    BOOST_TEST(!l.erase("k2"));
    BOOST_TEST(l.bytes() == 50u);
    auto removed = l.erase_if([](const std::string&, int v) { return v % 2 == 1; });
    std::sort(removed.begin(), removed.end());
    BOOST_TEST(removed == (std::vector<int>{1, 3, 5}), boost::test_tools::per_element());
    BOOST_TEST(order(l) == (keys{"k0", "k4"}), boost::test_tools::per_element());
    BOOST_TEST(l.bytes() == 20u);
    BOOST_TEST(l.clear().size() == 2u);
    BOOST_TEST(l.bytes() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::cache
