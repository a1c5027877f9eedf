// shield::budget arithmetic: burst, continuous refill, background reserve, exact waits,
// next_available, the tokens gauge, counters, option checks and Retry-After rounding.
#include "gateway/shield/budget.hpp"
#include "print.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <limits>
#include <ostream>
#include <stdexcept>
#include <string_view>

namespace imagegate::shield {
namespace {

namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);

// interval 300 ms, reserve 10 tokens
constexpr budget_options defaults{};
// interval 100 ms, reserve floor(5 * 20%) = 1 token
constexpr budget_options small{.budget = 10, .window = 1s, .burst = 5};
constexpr budget_options small_no_reserve{
    .budget = 10, .window = 1s, .burst = 5, .background_reserve_percent = 0};
// interval ceil(1 s / 3) = 333'333'334 ns (rounded towards slower), reserve 0
constexpr budget_options thirds{.budget = 3, .window = 1s, .burst = 1};

constexpr acquire_result granted{.granted = true, .wait = 0ns};
constexpr acquire_result refused(duration wait) { return {.granted = false, .wait = wait}; }

std::ostream& print(std::ostream& os, const budget_options& o) {
    return os << "{budget=" << o.budget << " window=" << o.window.count() << "ms burst=" << o.burst
              << " reserve=" << o.background_reserve_percent << "%}";
}

/// Drain `drained` foreground tokens at t0, then ask at t0 + after with priority p.
struct acquire_case {
    std::string_view name;
    budget_options options;
    std::uint64_t drained;
    duration after;
    priority p;
    acquire_result expected;
};

std::ostream& operator<<(std::ostream& os, const acquire_case& c) {
    os << c.name << " ";
    print(os, c.options);
    return os << " drained=" << c.drained << " after=" << c.after.count() << "ns " << c.p << " -> "
              << c.expected;
}

const acquire_case acquire_cases[] = {
    // a full bucket grants both priorities
    {"full, foreground", defaults, 0, 0ns, priority::foreground, granted},
    {"full, background", defaults, 0, 0ns, priority::background, granted},
    // burst: 50 back to back, the 51st waits one interval
    {"49 taken", defaults, 49, 0ns, priority::foreground, granted},
    {"burst spent", defaults, 50, 0ns, priority::foreground, refused(300ms)},
    // continuous refill; the wait is exact to the nanosecond
    {"a third refilled", defaults, 50, 100ms, priority::foreground, refused(200ms)},
    {"1 ns short", defaults, 50, 300ms - 1ns, priority::foreground, refused(1ns)},
    {"one interval later", defaults, 50, 300ms, priority::foreground, granted},
    {"idle for an hour", defaults, 50, 1h, priority::foreground, granted},
    // background must leave the reserve (10) behind: it needs 11 tokens
    {"11 left, background", defaults, 39, 0ns, priority::background, granted},
    {"10 left, background", defaults, 40, 0ns, priority::background, refused(300ms)},
    {"10 left, foreground", defaults, 40, 0ns, priority::foreground, granted},
    {"empty, background", defaults, 50, 0ns, priority::background, refused(11 * 300ms)},
    {"empty, background, 10 refilled", defaults, 50, 3s, priority::background, refused(300ms)},
    {"empty, background, 11 refilled", defaults, 50, 3300ms, priority::background, granted},
    // small bucket: interval 100 ms, reserve 1
    {"small, burst spent", small, 5, 0ns, priority::foreground, refused(100ms)},
    {"small, 1 left, background", small, 4, 0ns, priority::background, refused(100ms)},
    {"small, 2 left, background", small, 3, 0ns, priority::background, granted},
    {"small, 1 left, no reserve", small_no_reserve, 4, 0ns, priority::background, granted},
    {"small, empty, no reserve", small_no_reserve, 5, 0ns, priority::background, refused(100ms)},
    // an interval that does not divide evenly is rounded up (slower, never faster)
    {"thirds, burst spent", thirds, 1, 0ns, priority::foreground, refused(333'333'334ns)},
    {"thirds, 1 ns short", thirds, 1, 333'333'333ns, priority::foreground, refused(1ns)},
    {"thirds, background, reserve 0", thirds, 0, 0ns, priority::background, granted},
    // a caller whose `now` lags the schedule (read the clock before another thread locked)
    {"now behind t0", defaults, 50, -100ms, priority::foreground, refused(400ms)},
    {"now behind t0, full", defaults, 0, -100ms, priority::foreground, granted},
};

void drain(budget& b, std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) {
        BOOST_TEST_REQUIRE(b.try_acquire(t0, priority::foreground).granted);
    }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(budget_arithmetic)

BOOST_DATA_TEST_CASE(try_acquire, bdata::make(acquire_cases), c) {
    budget b(c.options);
    drain(b, c.drained);
    const time_point at = t0 + c.after;
    BOOST_TEST(b.next_available(at, c.p) == at + c.expected.wait);
    BOOST_TEST(b.try_acquire(at, c.p) == c.expected);
    if (!c.expected.granted) {
        // A refusal takes nothing, and the wait it reports is exact: 1 ns earlier is still
        // refused, the predicted instant is granted.
        if (c.expected.wait > 1ns) {
            BOOST_TEST(!b.try_acquire(at + c.expected.wait - 1ns, c.p).granted);
        }
        BOOST_TEST(b.try_acquire(at + c.expected.wait, c.p) == granted);
    }
}

BOOST_AUTO_TEST_CASE(derived_sizes) {
    BOOST_TEST(budget(defaults).interval() == duration(300ms));
    BOOST_TEST(budget(defaults).reserve() == 10u);
    BOOST_TEST(budget(small).reserve() == 1u);
    BOOST_TEST(budget(thirds).interval() == duration(333'333'334ns));
    BOOST_TEST(budget(thirds).reserve() == 0u);
    // 99% of a burst of 1 rounds down to 0: background can always get the only token
    BOOST_TEST(budget({.budget = 1, .window = 1s, .burst = 1, .background_reserve_percent = 99})
                   .reserve() == 0u);
}

BOOST_AUTO_TEST_CASE(next_available_does_not_consume) {
    budget b(defaults);
    drain(b, 50);
    BOOST_TEST(b.next_available(t0, priority::foreground) == t0 + 300ms);
    BOOST_TEST(b.next_available(t0, priority::foreground) == t0 + 300ms);
    BOOST_TEST(b.next_available(t0, priority::background) == t0 + 3300ms);
    BOOST_TEST(b.next_available(t0 + 1h, priority::background) == t0 + 1h);
    BOOST_TEST(b.counters() == (budget_counters{.granted = 50}));
}

struct tokens_case {
    std::uint64_t drained;
    duration after;
    double expected;
};

std::ostream& operator<<(std::ostream& os, const tokens_case& c) {
    return os << "drained=" << c.drained << " after=" << c.after.count() << "ns -> " << c.expected;
}

const tokens_case tokens_cases[] = {
    // starts full
    {0, 0ns, 50.0},
    {10, 0ns, 40.0},
    // refills continuously, one token per 300 ms
    {50, 0ns, 0.0},
    {50, 150ms, 0.5},
    {50, 300ms, 1.0},
    {50, 3s, 10.0},
    // never more than burst
    {50, 15s, 50.0},
    {50, 1h, 50.0},
    // a lagging `now` sees an empty bucket, never a negative one
    {50, -1s, 0.0},
};

BOOST_DATA_TEST_CASE(tokens_gauge, bdata::make(tokens_cases), c) {
    budget b(defaults);
    drain(b, c.drained);
    BOOST_TEST(b.tokens(t0 + c.after) == c.expected, boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(counters_by_priority) {
    budget b(small);
    drain(b, 4);
    BOOST_TEST(!b.try_acquire(t0, priority::background).granted);  // 1 left = the reserve
    BOOST_TEST(b.try_acquire(t0, priority::foreground).granted);
    BOOST_TEST(!b.try_acquire(t0, priority::foreground).granted);
    BOOST_TEST(!b.try_acquire(t0, priority::background).granted);
    BOOST_TEST(b.counters() ==
               (budget_counters{.granted = 5, .refused_foreground = 1, .refused_background = 2}));
}

/// Spend `spent` tokens at t0, empty the bucket with drain(t0 + drained_at), then ask at t0.
struct drain_case {
    std::string_view name;
    std::uint64_t spent;
    duration drained_at;
    acquire_result expected;
};

std::ostream& operator<<(std::ostream& os, const drain_case& c) {
    return os << c.name << ": spent " << c.spent << ", drained at t0" << std::showpos
              << c.drained_at.count() << std::noshowpos << "ns";
}

// `small_no_reserve`: burst 5, one token per 100 ms.
const drain_case drain_cases[] = {
    {"a full bucket is emptied", 0, 0ms, refused(100ms)},
    {"a half-spent bucket is emptied", 2, 0ms, refused(100ms)},
    {"an empty bucket stays as it is", 5, 0ms, refused(100ms)},
    // the schedule never moves backwards: a lagging clock changes nothing
    {"a lagging clock takes nothing back", 5, -1s, refused(100ms)},
    {"a full bucket drained a second ago has refilled", 0, -1s, granted},
    // emptied 50 ms ago: the first token comes 100 ms after the drain
    {"refill runs from the drain", 0, -50ms, refused(50ms)},
};

BOOST_DATA_TEST_CASE(drain_empties_the_bucket, bdata::make(drain_cases), c) {
    budget b(small_no_reserve);
    drain(b, c.spent);
    b.drain(t0 + c.drained_at);
    BOOST_TEST(b.try_acquire(t0, priority::foreground) == c.expected);
}

BOOST_AUTO_TEST_CASE(drain_counts_no_grant_and_the_bucket_refills) {
    budget b(small_no_reserve);
    b.drain(t0);
    BOOST_TEST(b.counters() == budget_counters{});
    BOOST_TEST(b.tokens(t0) == 0.0);
    // A whole burst again after burst × interval.
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST(b.try_acquire(t0 + 500ms, priority::foreground).granted);
    }
    BOOST_TEST(!b.try_acquire(t0 + 500ms, priority::foreground).granted);
}

struct options_case {
    std::string_view name;
    budget_options options;
    bool valid;
};

std::ostream& operator<<(std::ostream& os, const options_case& c) {
    os << c.name << " ";
    print(os, c.options);
    return os << (c.valid ? " valid" : " invalid");
}

constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();
constexpr auto ms_max = std::chrono::milliseconds::max();

const options_case options_cases[] = {
    // the extremes config::check lets through
    {"defaults", defaults, true},
    {"config maximum", {.budget = 1'000'000'000, .window = 24h, .burst = 1'000'000'000}, true},
    {"config minimum", {.budget = 1, .window = 1ms, .burst = 1}, true},
    {"one per day", {.budget = 1, .window = 24h, .burst = 1}, true},
    {"99% kept", {.budget = 1, .window = 1s, .burst = 1, .background_reserve_percent = 99}, true},
    // nonsense a constructor must refuse rather than divide by
    {"zero budget", {.budget = 0, .window = 1s, .burst = 1}, false},
    {"zero burst", {.budget = 1, .window = 1s, .burst = 0}, false},
    {"zero window", {.budget = 1, .window = 0ms, .burst = 1}, false},
    {"negative window", {.budget = 1, .window = -1ms, .burst = 1}, false},
    {"reserve 100%",
     {.budget = 1, .window = 1s, .burst = 1, .background_reserve_percent = 100},
     false},
    {"burst * interval overflows", {.budget = 1, .window = 24h, .burst = u64_max}, false},
    {"window overflows the clock", {.budget = 1, .window = ms_max, .burst = 1}, false},
};

BOOST_DATA_TEST_CASE(options_checked, bdata::make(options_cases), c) {
    if (c.valid) {
        BOOST_CHECK_NO_THROW(budget{c.options});
    } else {
        BOOST_CHECK_THROW(budget{c.options}, std::invalid_argument);
    }
}

BOOST_AUTO_TEST_SUITE_END()

struct retry_after_case {
    duration wait;
    std::chrono::seconds expected;
};

std::ostream& operator<<(std::ostream& os, const retry_after_case& c) {
    return os << c.wait.count() << "ns -> " << c.expected.count() << "s";
}

const retry_after_case retry_after_cases[] = {
    // nothing to wait
    {0ns, 0s},
    {-5s, 0s},
    // any partial second rounds up, so a client that obeys is never early
    {1ns, 1s},
    {300ms, 1s},
    {999'999'999ns, 1s},
    {1s, 1s},
    {1s + 1ns, 2s},
    {59'500ms, 60s},
    {5min, 300s},
};

BOOST_DATA_TEST_CASE(retry_after_rounds_up, bdata::make(retry_after_cases), c) {
    BOOST_TEST(retry_after_seconds(c.wait).count() == c.expected.count());
}

}  // namespace imagegate::shield
