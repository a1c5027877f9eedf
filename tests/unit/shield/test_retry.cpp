// shield retry rule: which failures are retried, the jittered backoff range, the deadline
// check, and the injected random source.
#include "gateway/shield/retry.hpp"

#include "print.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <limits>
#include <ostream>
#include <random>
#include <string_view>

namespace imagegate::shield {
namespace {

namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);
constexpr retry_options base_50ms{};  // base 50 ms: backoff in [50 ms, 100 ms]

constexpr failed_attempt connect_failure{.kind = failure_kind::connect_failed};
constexpr failed_attempt status(unsigned code, unsigned attempt = 1) {
    return {.kind = failure_kind::status, .status = code, .attempt = attempt};
}
constexpr retry_decision give_up{};
constexpr retry_decision retry_after(duration backoff) {
    return {.retry = true, .backoff = backoff};
}

struct retry_case {
    std::string_view name;
    failed_attempt failure;
    duration deadline_in;  // deadline = t0 + deadline_in
    std::uint64_t random;  // the injected random bits
    retry_decision expected;
};

std::ostream& operator<<(std::ostream& os, const retry_case& c) {
    return os << c.name << ": " << c.failure << " deadline +" << c.deadline_in << " random "
              << c.random << " -> " << c.expected;
}

const retry_case retry_cases[] = {
    // retried once: the upstream did no work for us
    {"connect failed", connect_failure, 10s, 0, retry_after(50ms)},
    {"502", status(502), 10s, 0, retry_after(50ms)},
    {"503", status(503), 10s, 0, retry_after(50ms)},
    {"504", status(504), 10s, 0, retry_after(50ms)},
    // a pooled connection closed by the upstream while idle: nothing was processed
    {"stale connection", {.kind = failure_kind::stale_connection}, 10s, 0, retry_after(50ms)},
    {"stale connection twice",
     {.kind = failure_kind::stale_connection, .attempt = 2},
     10s,
     0,
     give_up},
    // full jitter over [base, 2 base]: random mod (50 ms + 1 ns)
    {"jitter middle", connect_failure, 10s, 25'000'000, retry_after(75ms)},
    {"jitter top", connect_failure, 10s, 50'000'000, retry_after(100ms)},
    {"jitter wraps", connect_failure, 10s, 50'000'001, retry_after(50ms)},
    // never a second retry
    {"connect failed twice", {.kind = failure_kind::connect_failed, .attempt = 2}, 10s, 0, give_up},
    {"503 twice", status(503, 2), 10s, 0, give_up},
    // never 4xx: answers, or (429) a deeper hole
    {"400", status(400), 10s, 0, give_up},
    {"401", status(401), 10s, 0, give_up},
    {"403", status(403), 10s, 0, give_up},
    {"404", status(404), 10s, 0, give_up},
    {"408", status(408), 10s, 0, give_up},
    {"429", status(429), 10s, 0, give_up},
    // other 5xx, odd statuses, and failures after the request went out
    {"500", status(500), 10s, 0, give_up},
    {"501", status(501), 10s, 0, give_up},
    {"505", status(505), 10s, 0, give_up},
    {"200", status(200), 10s, 0, give_up},
    {"no status", status(0), 10s, 0, give_up},
    {"exchange failed", {.kind = failure_kind::exchange_failed}, 10s, 0, give_up},
    // the retry must start strictly before the deadline
    {"backoff ends 1 ns early", connect_failure, 50ms + 1ns, 0, retry_after(50ms)},
    {"backoff ends at deadline", connect_failure, 50ms, 0, give_up},
    {"jitter pushes past", connect_failure, 80ms, 40'000'000, give_up},
    {"deadline now", connect_failure, 0ns, 0, give_up},
    {"deadline passed", connect_failure, -1s, 0, give_up},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(retry_rule)

BOOST_DATA_TEST_CASE(decide, bdata::make(retry_cases), c) {
    BOOST_TEST(decide_retry(c.failure, t0, t0 + c.deadline_in, base_50ms, c.random) == c.expected);
    if (c.deadline_in >= 10s) {
        // With time to spare, only the kind of failure decides.
        BOOST_TEST(is_retryable(c.failure) == c.expected.retry);
    }
}

BOOST_AUTO_TEST_CASE(backoff_range) {
    BOOST_TEST(jittered_backoff(50ms, 0) == duration(50ms));
    const duration top = jittered_backoff(50ms, std::numeric_limits<std::uint64_t>::max());
    BOOST_TEST(top >= duration(50ms));
    BOOST_TEST(top <= duration(100ms));
    BOOST_TEST(jittered_backoff(0ns, 12345) == duration::zero());
    BOOST_TEST(jittered_backoff(-1s, 12345) == duration::zero());
    BOOST_TEST(jittered_backoff(1ns, 1) == duration(2ns));
}

BOOST_AUTO_TEST_CASE(generator_overload_stays_in_range) {
    std::mt19937_64 rng(42);
    duration lowest = duration::max();
    duration highest = duration::min();
    for (int i = 0; i < 10'000; ++i) {
        const retry_decision d = decide_retry(connect_failure, t0, t0 + 10s, base_50ms, rng);
        BOOST_TEST_REQUIRE(d.retry);
        lowest = std::min(lowest, d.backoff);
        highest = std::max(highest, d.backoff);
    }
    BOOST_TEST(lowest >= duration(50ms));
    BOOST_TEST(highest <= duration(100ms));
    // 10'000 draws cover the range: nothing stuck at one end
    BOOST_TEST(lowest < duration(51ms));
    BOOST_TEST(highest > duration(99ms));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::shield
