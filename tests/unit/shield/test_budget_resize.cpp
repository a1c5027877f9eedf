// shield::budget::resize (a configuration reload): what was spent stays spent in the new
// interval, a smaller burst never grants more than the new sizes allow, slots already granted
// or held keep their instants, and unusable sizes change nothing.
#include "gateway/shield/budget.hpp"
#include "print.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <stdexcept>
#include <string_view>

namespace imagegate::shield {
namespace {

namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);

// interval 100 ms, tolerance 400 ms, no background reserve
constexpr budget_options small{
    .budget = 10, .window = 1s, .burst = 5, .background_reserve_percent = 0};

constexpr budget_options with(std::uint64_t budget, std::chrono::milliseconds window,
                              std::uint64_t burst) {
    auto o = small;
    o.budget = budget;
    o.window = window;
    o.burst = burst;
    return o;
}

/// Drain `drained` tokens at t0 under `small`, resize to `next` at t0 + `at`, then take
/// tokens at that instant until refused.
struct resize_case {
    std::string_view name;
    std::uint64_t drained;
    duration at;
    budget_options next;
    std::uint64_t grants;  // tokens granted right after the resize
    duration wait;         // the refusal that follows: its exact wait
};

std::ostream& operator<<(std::ostream& os, const resize_case& c) {
    return os << c.name << ": drained " << c.drained << ", resize at +" << c.at.count()
              << "ns to {budget=" << c.next.budget << " window=" << c.next.window.count()
              << "ms burst=" << c.next.burst << "} -> " << c.grants << " grants, then wait "
              << c.wait.count() << "ns";
}

const resize_case resize_cases[] = {
    {"same sizes: nothing changes", 5, 0ns, small, 0, 100ms},
    {"same sizes, half refilled", 5, 250ms, small, 2, 50ms},
    {"unused bucket: the new burst", 0, 0ns, with(10, 1s, 2), 2, 100ms},
    {"unused bucket: a larger burst", 0, 0ns, with(20, 1s, 8), 8, 50ms},
    // 5 calls spent, at 200 ms each now: 1 s ahead, tolerance 800 ms. Keeping the raw
    // schedule (500 ms ahead) would grant 2 more at once.
    {"lower budget: spent calls stay spent", 5, 0ns, with(5, 1s, 5), 0, 200ms},
    {"longer window: the same", 5, 0ns, with(10, 2s, 5), 0, 200ms},
    // ceil(350 ms / 100 ms) = 4 calls spent -> 800 ms ahead at 200 ms: one token left.
    {"lower budget, partly refilled", 5, 150ms, with(5, 1s, 5), 1, 200ms},
    // 5 calls at 50 ms: 250 ms ahead, tolerance 200 ms. The raw schedule would wait 300 ms.
    {"higher budget: the next call sooner", 5, 0ns, with(20, 1s, 5), 0, 50ms},
    {"higher budget and burst", 5, 0ns, with(20, 1s, 10), 5, 50ms},
    // Same interval, smaller burst: 2 spent leave 0 of 2.
    {"smaller burst, 2 spent", 2, 0ns, with(10, 1s, 2), 0, 100ms},
    {"smaller burst, 1 spent", 1, 0ns, with(10, 1s, 2), 1, 100ms},
    {"smaller burst than spent", 5, 0ns, with(10, 1s, 1), 0, 500ms},
    {"larger burst, 2 spent", 2, 0ns, with(10, 1s, 10), 8, 100ms},
    // Fully refilled before the resize: a full bucket of the new size.
    {"refilled, lower budget", 5, 1s, with(2, 1s, 2), 2, 500ms},
};

BOOST_DATA_TEST_CASE(resize_keeps_what_was_spent, bdata::make(resize_cases), c) {
    budget b(small);
    for (std::uint64_t i = 0; i < c.drained; ++i) {
        BOOST_TEST_REQUIRE(b.try_acquire(t0, priority::foreground).granted);
    }
    const time_point at = t0 + c.at;
    b.resize(c.next, at);
    BOOST_TEST(b.options().budget == c.next.budget);
    BOOST_TEST(b.options().burst == c.next.burst);
    std::uint64_t grants = 0;
    acquire_result r;
    while ((r = b.try_acquire(at, priority::foreground)).granted && grants <= 100) {
        ++grants;
    }
    BOOST_TEST(grants == c.grants);
    BOOST_TEST(r.wait == c.wait);
    // The bucket never claims more than the new burst.
    BOOST_TEST(b.tokens(at) <= static_cast<double>(c.next.burst));
}

BOOST_AUTO_TEST_CASE(granted_and_held_slots_keep_their_instants) {
    budget b(small);
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST_REQUIRE(b.try_acquire(t0, priority::foreground).granted);
    }
    // A queued grant at +100 ms and a hold for key 7 at +200 ms.
    const auto queued = b.reserve({.now = t0, .max_wait = 1s, .key = 0});
    BOOST_TEST_REQUIRE(queued.granted);
    BOOST_TEST(queued.slot == t0 + 100ms);
    const auto refused = b.reserve({.now = t0, .max_wait = 0ns, .key = 7});
    BOOST_TEST_REQUIRE(!refused.granted);
    BOOST_TEST_REQUIRE(refused.held);
    BOOST_TEST(refused.slot == t0 + 200ms);

    // Half the budget: the 7 slots handed out (700 ms ahead) now take 1.4 s.
    b.resize(with(5, 1s, 5), t0);
    BOOST_TEST(b.queued(t0) == 1u);
    BOOST_TEST(b.holds() == 1u);
    const auto next = b.reserve({.now = t0, .max_wait = 1s, .key = 0});
    BOOST_TEST(next.granted);
    BOOST_TEST(next.slot == t0 + 600ms);  // 1.4 s - 800 ms tolerance
    // The hold is claimed at its instant, the queued grant spent at its own.
    const auto claimed = b.reserve({.now = t0 + 200ms, .max_wait = 0ns, .key = 7});
    BOOST_TEST(claimed.granted);
    BOOST_TEST(claimed.held);
    BOOST_TEST(claimed.slot == t0 + 200ms);
    b.commit(queued);
    b.commit(claimed);
    // Released, the last slot goes back to the bucket in the new interval.
    BOOST_TEST(b.release(next, t0 + 300ms).given_back);
    BOOST_TEST(b.next_available(t0 + 300ms, priority::foreground) == t0 + 600ms);
}

BOOST_AUTO_TEST_CASE(unusable_sizes_change_nothing) {
    budget b(small);
    BOOST_TEST_REQUIRE(b.try_acquire(t0, priority::foreground).granted);
    BOOST_CHECK_THROW(b.resize(with(0, 1s, 5), t0), std::invalid_argument);
    BOOST_CHECK_THROW(b.resize(with(10, 0s, 5), t0), std::invalid_argument);
    BOOST_CHECK_THROW(b.resize(with(10, 1s, 0), t0), std::invalid_argument);
    BOOST_TEST(b.options().budget == small.budget);
    BOOST_TEST(b.interval() == 100ms);
    std::uint64_t grants = 0;
    while (b.try_acquire(t0, priority::foreground).granted && grants <= 10) {
        ++grants;
    }
    BOOST_TEST(grants == 4u);
}

}  // namespace
}  // namespace imagegate::shield
