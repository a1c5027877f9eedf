// shield::budget reservations with an injected clock: queued slots in arrival order, refusals
// with the exact slot, slots held for the refused key and claimed by it, slots given back,
// handed on or left vacant, and the Retry-After advice built from a refusal.
#include "gateway/shield/budget.hpp"
#include "print.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <optional>
#include <ostream>
#include <string_view>
#include <vector>

namespace imagegate::shield {
namespace {

namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);

// One token per second, two back to back, no background reserve, holds 500 ms of grace.
constexpr budget_options one_per_second{.budget = 10,
                                        .window = 10s,
                                        .burst = 2,
                                        .background_reserve_percent = 0,
                                        .max_holds = 2,
                                        .hold_horizon = 10s,
                                        .hold_grace = 500ms};
// The same with half the bucket kept from background refreshes.
constexpr budget_options with_reserve{.budget = 10,
                                      .window = 10s,
                                      .burst = 4,
                                      .background_reserve_percent = 50,
                                      .max_holds = 2,
                                      .hold_horizon = 10s,
                                      .hold_grace = 500ms};

enum class op { reserve, background, release, commit };

/// One step of a script: at t0 + `at`, do `what`; check the answer.
struct step {
    duration at;
    op what;
    duration max_wait = 0s;  ///< reserve
    std::uint64_t key = 0;   ///< reserve: 0 = no key
    std::size_t target = 0;  ///< release / commit: the step whose reservation it acts on
    // expected, reserve: granted, slot - t0, held
    bool granted = false;
    duration slot{};
    bool held = false;
    // expected, release: the step whose grant moved (0: none), where to, given back
    std::size_t moved = 0;
    duration moved_to{};
    bool given_back = false;
};

step grant(duration at, duration max_wait, duration slot, std::uint64_t key = 0) {
    return {.at = at,
            .what = op::reserve,
            .max_wait = max_wait,
            .key = key,
            .granted = true,
            .slot = slot};
}
step refuse(duration at, duration max_wait, duration slot, std::uint64_t key = 0,
            bool held = false) {
    return {.at = at,
            .what = op::reserve,
            .max_wait = max_wait,
            .key = key,
            .slot = slot,
            .held = held};
}
step claim(duration at, duration max_wait, duration slot, std::uint64_t key) {
    return {.at = at,
            .what = op::reserve,
            .max_wait = max_wait,
            .key = key,
            .granted = true,
            .slot = slot,
            .held = true};
}
step release(duration at, std::size_t target, bool given_back, std::size_t moved = 0,
             duration moved_to = {}) {
    return {.at = at,
            .what = op::release,
            .target = target,
            .moved = moved,
            .moved_to = moved_to,
            .given_back = given_back};
}
step commit(duration at, std::size_t target) {
    return {.at = at, .what = op::commit, .target = target};
}
step background(duration at, bool granted, duration slot) {
    return {.at = at, .what = op::background, .granted = granted, .slot = slot};
}

struct script {
    std::string_view name;
    budget_options options;
    std::vector<step> steps;  // targets are 1-based step numbers
    budget_counters expected;
};

std::ostream& operator<<(std::ostream& os, const script& s) { return os << s.name; }

const script scripts[] = {
    {"the k-th waiter's slot is tat + k intervals",
     one_per_second,
     {grant(0s, 5s, 0s), grant(0s, 5s, 0s), grant(0s, 5s, 1s), grant(0s, 5s, 2s),
      grant(100ms, 5s, 3s)},
     {.granted = 5, .queued = 3}},
    {"a slot beyond max_wait is refused at once with its exact instant, and held",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), grant(0s, 2s, 1s), refuse(0s, 500ms, 2s, 7, true),
      // nothing was taken for the caller without a key: the next slot is 3 s (2 s is held)
      refuse(0s, 1s, 3s), grant(0s, 3s, 3s)},
     {.granted = 4, .refused_foreground = 2, .queued = 2, .holds = 1}},
    {"the key coming back early is refused again with the same slot, on time it claims it",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), refuse(0s, 0s, 1s, 7, true),
      refuse(200ms, 500ms, 1s, 7, true), claim(600ms, 500ms, 1s, 7)},
     {.granted = 3, .refused_foreground = 2, .holds = 1, .holds_claimed = 1}},
    {"claim: early within max_wait waits for the held slot; the floor of Retry-After",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), refuse(0s, 0s, 1s, 7, true),
      refuse(10ms, 0s, 1s, 7, true), claim(400ms, 1s, 1s, 7),
      // claimed: the key has no hold any more, a new call queues normally
      grant(500ms, 5s, 2s, 7)},
     {.granted = 4, .refused_foreground = 2, .queued = 1, .holds = 1, .holds_claimed = 1}},
    {"a held slot is claimed late within its grace, then never again",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), refuse(0s, 0s, 1s, 7, true), claim(1400ms, 0s, 1s, 7),
      grant(1400ms, 5s, 2s, 7)},
     {.granted = 4, .refused_foreground = 1, .queued = 1, .holds = 1, .holds_claimed = 1}},
    {"a held slot nobody came back for expires after its grace: the token is lost",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), refuse(0s, 0s, 1s, 7, true), grant(1600ms, 5s, 2s, 7)},
     {.granted = 3, .refused_foreground = 1, .queued = 1, .holds = 1, .holds_expired = 1}},
    {"holds are bounded in number",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), refuse(0s, 0s, 1s, 1, true),
      refuse(0s, 0s, 2s, 2, true), refuse(0s, 0s, 3s, 3, false)},
     {.granted = 2, .refused_foreground = 3, .holds = 2}},
    {"holds are bounded in distance (hold_horizon)",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), grant(0s, 9s, 1s), grant(0s, 9s, 2s), grant(0s, 9s, 3s),
      grant(0s, 9s, 4s), grant(0s, 9s, 5s), grant(0s, 9s, 6s), grant(0s, 9s, 7s), grant(0s, 9s, 8s),
      grant(0s, 9s, 9s), refuse(0s, 9s, 10s, 1, true), refuse(0s, 9s, 11s, 2, false)},
     {.granted = 11, .refused_foreground = 2, .queued = 9, .holds = 1}},
    {"the last slot handed out goes back to the bucket",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), grant(0s, 5s, 1s), release(200ms, 3, true),
      grant(300ms, 5s, 1s)},
     {.granted = 4, .queued = 2, .given_back = 1}},
    {"an earlier slot goes to the latest waiter, whose slot goes back",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), grant(0s, 5s, 1s), grant(0s, 5s, 2s), grant(0s, 5s, 3s),
      release(500ms, 3, false, 5, 1s), grant(600ms, 5s, 3s)},
     {.granted = 6, .queued = 4, .handed_on = 1}},
    {"behind a hold the freed slot is vacant, and the next arrival takes it first",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), grant(0s, 5s, 1s), grant(0s, 5s, 2s),
      refuse(0s, 1s, 3s, 9, true), release(500ms, 3, false, 4, 1s), grant(600ms, 5s, 2s),
      grant(600ms, 5s, 4s)},
     {.granted = 6, .refused_foreground = 1, .queued = 4, .holds = 1, .handed_on = 1}},
    {"a vacant slot in the past is lost",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), grant(0s, 5s, 1s), refuse(0s, 0s, 2s, 9, true),
      release(500ms, 3, false), grant(1500ms, 5s, 3s)},
     {.granted = 4, .refused_foreground = 1, .queued = 2, .holds = 1, .wasted = 1}},
    {"a grant at once goes back only while nothing came after it",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), release(0s, 1, false), release(0s, 2, true),
      grant(0s, 0s, 0s), refuse(0s, 0s, 1s)},
     {.granted = 3, .refused_foreground = 1, .given_back = 1, .wasted = 1}},
    {"a committed slot is spent: releasing it later does nothing",
     one_per_second,
     {grant(0s, 0s, 0s), grant(0s, 0s, 0s), grant(0s, 5s, 1s), commit(1s, 3), release(1s, 3, false),
      grant(1s, 5s, 2s)},
     {.granted = 4, .queued = 2}},
    {"background calls never queue and leave the reserve, queued slots included",
     with_reserve,
     {background(0s, true, 0s), background(0s, true, 0s), background(0s, false, 1s),
      grant(0s, 5s, 0s), grant(0s, 5s, 0s), grant(0s, 5s, 1s), background(500ms, false, 4s)},
     {.granted = 5, .refused_background = 2, .queued = 1}},
};

BOOST_DATA_TEST_CASE(reservation_scripts, bdata::make(scripts), s) {
    budget b(s.options);
    std::vector<reservation> made(s.steps.size() + 1);
    for (std::size_t i = 0; i < s.steps.size(); ++i) {
        const step& st = s.steps[i];
        const time_point now = t0 + st.at;
        BOOST_TEST_CONTEXT("step " << i + 1) {
            switch (st.what) {
            case op::reserve:
            case op::background: {
                const auto r = b.reserve(
                    {.now = now,
                     .prio = st.what == op::reserve ? priority::foreground : priority::background,
                     .max_wait = st.max_wait,
                     .key = st.key});
                BOOST_TEST(r.granted == st.granted);
                BOOST_TEST(r.slot == t0 + st.slot);
                BOOST_TEST(r.held == st.held);
                made[i + 1] = r;
                break;
            }
            case op::release: {
                const auto res = b.release(made.at(st.target), now);
                BOOST_TEST(res.given_back == st.given_back);
                BOOST_TEST(res.moved_id == (st.moved == 0 ? 0 : made.at(st.moved).id));
                if (st.moved != 0) {
                    BOOST_TEST(res.moved_to == t0 + st.moved_to);
                }
                break;
            }
            case op::commit: b.commit(made.at(st.target)); break;
            }
        }
    }
    BOOST_TEST(b.counters() == s.expected);
}

BOOST_AUTO_TEST_CASE(queue_and_hold_gauges) {
    budget b(one_per_second);
    b.reserve({.now = t0});
    b.reserve({.now = t0});
    const auto a = b.reserve({.now = t0, .max_wait = 5s});
    b.reserve({.now = t0, .max_wait = 5s});
    b.reserve({.now = t0, .max_wait = 0s, .key = 3});
    BOOST_TEST(b.queued(t0) == 2u);
    BOOST_TEST(b.queued(t0 + 1s) == 1u);  // the first queued slot is due
    BOOST_TEST(b.holds() == 1u);
    BOOST_TEST(b.full_at() == t0 + 5s);  // 2 spent, 2 queued, 1 held: 5 intervals
    b.commit(a);
    BOOST_TEST(b.queued(t0) == 1u);
}

struct advice_case {
    duration wait;
    bool held;
    retry_advice expected;
};

std::ostream& operator<<(std::ostream& os, const advice_case& c) {
    return os << c.wait.count() << "ns held=" << c.held << " -> " << c.expected;
}

const advice_case advice_cases[] = {
    // not held: nothing exists earlier, round up so an obedient client is never early
    {1500ms, false, {.seconds = 2s, .milliseconds = 1500ms}},
    {1500'000'001ns, false, {.seconds = 2s, .milliseconds = 1501ms}},
    {3s, false, {.seconds = 3s, .milliseconds = 3000ms}},
    // held: round down, the client arrives just before its slot and waits the rest in line
    {1500ms, true, {.seconds = 1s, .milliseconds = 1500ms}},
    {1500'000'001ns, true, {.seconds = 1s, .milliseconds = 1500ms}},
    {59'999ms, true, {.seconds = 59s, .milliseconds = 59'999ms}},
    // never 0: SDKs retry at once on 0
    {0ns, false, {.seconds = 1s, .milliseconds = 1ms}},
    {300us, true, {.seconds = 1s, .milliseconds = 1ms}},
    {-1s, false, {.seconds = 1s, .milliseconds = 1ms}},
};

BOOST_DATA_TEST_CASE(retry_advice_rounding, bdata::make(advice_cases), c) {
    BOOST_TEST(advise_retry(c.wait, c.held) == c.expected);
}

}  // namespace
}  // namespace imagegate::shield
