// redis::breaker_core: opening after consecutive failures, the cooldown, the half-open probe
// and its backoff, on an injected clock.
#include "gateway/redis/breaker.hpp"

#include <boost/test/unit_test.hpp>

using imagegate::redis::breaker_core;
using imagegate::redis::breaker_state;
using namespace std::chrono_literals;

namespace {
const breaker_core::time_point t0{std::chrono::seconds(1000)};
}

BOOST_AUTO_TEST_CASE(opens_after_threshold_consecutive_failures) {
    breaker_core b({.failure_threshold = 3, .cooldown = 500ms, .max_cooldown = 2s});
    b.on_failure(t0);
    b.on_failure(t0);
    b.on_success();  // a success resets the run
    b.on_failure(t0);
    b.on_failure(t0);
    BOOST_TEST(b.allow(t0));
    BOOST_TEST((b.state(t0) == breaker_state::closed));
    b.on_failure(t0);
    BOOST_TEST((b.state(t0) == breaker_state::open));
    BOOST_TEST(!b.allow(t0 + 499ms));
    BOOST_TEST(b.opened() == 1u);
}

BOOST_AUTO_TEST_CASE(one_probe_after_cooldown_then_closes_or_reopens_with_backoff) {
    breaker_core b({.failure_threshold = 1, .cooldown = 500ms, .max_cooldown = 1500ms});
    b.on_failure(t0);
    BOOST_TEST((b.state(t0 + 500ms) == breaker_state::half_open));
    BOOST_TEST(b.allow(t0 + 500ms));   // the probe
    BOOST_TEST(!b.allow(t0 + 501ms));  // only one
    b.on_failure(t0 + 600ms);          // probe failed: cooldown doubles
    BOOST_TEST(!b.allow(t0 + 600ms + 999ms));
    BOOST_TEST(b.allow(t0 + 600ms + 1000ms));
    b.on_failure(t0 + 1700ms);  // capped at max_cooldown
    BOOST_TEST(!b.allow(t0 + 1700ms + 1499ms));
    BOOST_TEST(b.allow(t0 + 1700ms + 1500ms));
    b.on_success();
    BOOST_TEST((b.state(t0 + 3300ms) == breaker_state::closed));
    BOOST_TEST(b.allow(t0 + 3300ms));
    // After closing, the cooldown starts from its base again.
    b.on_failure(t0 + 4s);
    BOOST_TEST(b.allow(t0 + 4s + 500ms));
}

BOOST_AUTO_TEST_CASE(a_probe_that_never_reports_is_replaced_after_a_cooldown) {
    breaker_core b({.failure_threshold = 1, .cooldown = 100ms, .max_cooldown = 1s});
    b.on_failure(t0);
    BOOST_TEST(b.allow(t0 + 100ms));
    BOOST_TEST(!b.allow(t0 + 150ms));
    BOOST_TEST(b.allow(t0 + 200ms));
}

BOOST_AUTO_TEST_CASE(failures_reported_while_open_do_not_extend_it) {
    breaker_core b({.failure_threshold = 1, .cooldown = 100ms, .max_cooldown = 1s});
    b.on_failure(t0);
    b.on_failure(t0 + 90ms);  // an operation let through before it opened
    BOOST_TEST(b.allow(t0 + 100ms));
    BOOST_TEST(b.opened() == 1u);
}
