// cache::lru: recency order, the byte and entry bounds, refusal and replacement.
#include "cache/lru.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace imagegate::cache {
namespace {

// The values under test: a key, a payload and a weight, indexed by the key they carry.
template <class K>
struct item {
    K key{};
    int value = 0;
    std::uint64_t weight = 0;
};

template <class K>
struct item_traits {
    using key_type = std::conditional_t<std::is_same_v<K, std::string>, std::string_view, K>;
    static key_type key_of(const item<K>& i) noexcept { return i.key; }
    static std::size_t hash(const key_type& k) noexcept { return std::hash<key_type>{}(k); }
    static std::uint64_t weight(const item<K>& i) noexcept { return i.weight; }
};

// The (key, value, weight) interface the cases are written against, over lru<item<K>>.
template <class K>
class test_lru {
    using impl = lru<item<K>, item_traits<K>>;
    using key_type = typename item_traits<K>::key_type;

public:
    struct put_result {
        bool stored = false;
        std::optional<int> replaced;
        std::vector<int> evicted;
    };

    explicit test_lru(lru_limits limits) : impl_(limits) {}

    put_result put(K k, int v, std::uint64_t w) {
        auto r = impl_.put(item<K>{std::move(k), v, w});
        put_result out;
        out.stored = r.stored;
        if (r.replaced) {
            out.replaced = r.replaced->value;
        }
        for (const auto& e : r.evicted) {
            out.evicted.push_back(e.value);
        }
        return out;
    }
    int* get(const key_type& k) {
        auto* i = impl_.get(k);
        return i ? &i->value : nullptr;
    }
    const int* peek(const key_type& k) const {
        const auto* i = impl_.peek(k);
        return i ? &i->value : nullptr;
    }
    std::optional<int> erase(const key_type& k) {
        auto i = impl_.erase(k);
        return i ? std::optional<int>(i->value) : std::nullopt;
    }
    template <class Pred>
    std::vector<int> erase_if(Pred pred) {
        return values(impl_.erase_if([&](const item<K>& i) { return pred(i.key, i.value); }));
    }
    std::vector<int> clear() { return values(impl_.clear()); }
    template <class F>
    void for_each(F f) const {
        impl_.for_each([&](const item<K>& i) { f(i.key, i.value); });
    }
    std::uint64_t bytes() const noexcept { return impl_.bytes(); }
    std::uint64_t size() const noexcept { return impl_.size(); }

private:
    static std::vector<int> values(const std::vector<item<K>>& items) {
        std::vector<int> out;
        for (const auto& i : items) {
            out.push_back(i.value);
        }
        return out;
    }

    impl impl_;
};

using string_lru = test_lru<std::string>;

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
    test_lru<int> l({.max_bytes = budget});
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

// Random puts, gets, erases and erase_ifs over a key space large enough to grow the table
// several times and to exercise backward-shift deletion and node compaction, checked against
// a plain list model of the same policy.
BOOST_AUTO_TEST_CASE(matches_a_list_model_under_churn) {
    constexpr std::uint64_t budget = 20'000;
    constexpr std::uint64_t max_entries = 700;
    test_lru<int> l({.max_bytes = budget, .max_entries = max_entries});
    std::list<std::pair<int, std::uint64_t>> model;  // least recently used first
    std::uint64_t model_bytes = 0;
    const auto find = [&](int k) {
        return std::find_if(model.begin(), model.end(),
                            [k](const auto& p) { return p.first == k; });
    };
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> pick_key(0, 2'000);
    std::uniform_int_distribution<int> op(0, 99);
    std::uniform_int_distribution<std::uint64_t> weight(1, 60);
    for (int step = 0; step < 40'000; ++step) {
        const int k = pick_key(rng);
        const int o = op(rng);
        if (o < 50) {
            const std::uint64_t w = weight(rng);
            const auto r = l.put(k, k, w);
            if (const auto it = find(k); it != model.end()) {
                model_bytes -= it->second;
                model.erase(it);
            }
            while (!model.empty() && (model_bytes + w > budget || model.size() >= max_entries)) {
                model_bytes -= model.front().second;
                model.pop_front();
            }
            model.emplace_back(k, w);
            model_bytes += w;
            BOOST_TEST_REQUIRE(r.stored);
        } else if (o < 85) {
            const int* v = l.get(k);
            const auto it = find(k);
            BOOST_TEST_REQUIRE((v != nullptr) == (it != model.end()));
            if (v) {
                BOOST_TEST_REQUIRE(*v == k);
                model.splice(model.end(), model, it);
            }
        } else if (o < 99) {
            const auto v = l.erase(k);
            const auto it = find(k);
            BOOST_TEST_REQUIRE(v.has_value() == (it != model.end()));
            if (it != model.end()) {
                model_bytes -= it->second;
                model.erase(it);
            }
        } else {
            const int m = 2 + k % 5;
            l.erase_if([m](int key_, int) { return key_ % m == 0; });
            for (auto it = model.begin(); it != model.end();) {
                if (it->first % m == 0) {
                    model_bytes -= it->second;
                    it = model.erase(it);
                } else {
                    ++it;
                }
            }
        }
        BOOST_TEST_REQUIRE(l.bytes() == model_bytes);
        BOOST_TEST_REQUIRE(l.size() == model.size());
        if (step % 1'000 == 0) {
            std::vector<int> got;
            l.for_each([&](int key_, int) { got.push_back(key_); });
            std::vector<int> want;
            for (const auto& p : model) {
                want.push_back(p.first);
            }
            BOOST_TEST_REQUIRE(got == want, boost::test_tools::per_element());
            for (const auto& p : model) {
                BOOST_TEST_REQUIRE(l.peek(p.first) != nullptr);
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::cache
