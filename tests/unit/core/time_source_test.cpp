// gateway/core/time_source.hpp: the logical clock tests move instead of sleeping.
#include "gateway/core/time_source.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>

using namespace std::chrono_literals;
using imagegate::time_source;

BOOST_AUTO_TEST_SUITE(time_source_suite)

BOOST_AUTO_TEST_CASE(unmoved_it_is_the_steady_clock) {
    const time_source t;
    const auto before = std::chrono::steady_clock::now();
    const auto now = t.now();
    const auto after = std::chrono::steady_clock::now();
    BOOST_TEST((before <= now && now <= after));
    BOOST_TEST((t.to_steady(now) == now));
}

BOOST_AUTO_TEST_CASE(advance_moves_now_and_maps_back_for_timers) {
    time_source t;
    struct row {
        std::chrono::steady_clock::duration step;
        std::chrono::steady_clock::duration expected_total;
    };
    const row rows[] = {{5min, 5min}, {0s, 5min}, {-1h, 5min}, {250ms, 5min + 250ms}};
    for (const auto& r : rows) {
        t.advance(r.step);  // never backwards: a negative step changes nothing
        const auto steady = std::chrono::steady_clock::now();
        const auto logical = t.now();
        const auto offset = logical - steady;
        BOOST_TEST((offset >= r.expected_total && offset < r.expected_total + 1s));
        // The instant a timer waits for: this clock's reading mapped back to the steady one.
        const auto slot = logical + 2s;
        BOOST_TEST(
            (t.to_steady(slot) - steady >= 2s - 1ms && t.to_steady(slot) - steady < 2s + 1s));
    }
}

BOOST_AUTO_TEST_CASE(the_real_clock_is_one_shared_unmoved_instance) {
    BOOST_TEST(&time_source::real() == &time_source::real());
    const auto steady = std::chrono::steady_clock::now();
    BOOST_TEST((time_source::real().now() - steady < 1s));
}

BOOST_AUTO_TEST_SUITE_END()
