// The fleet budget's pure parts: the strict decoding of the reservation script's replies
// (table-driven: every shape, range and outcome/field contradiction a hostile Redis could
// send), the keys (one hash tag, never a raw credential), stable hold keys, the script
// arguments, the 1/N fallback sizing and the table of local pauses.
#define BOOST_TEST_MODULE unit_fleet_budget
#include "gateway/fleet/budget_gate.hpp"
#include "gateway/fleet/budget_pauses.hpp"
#include "gateway/fleet/budget_script.hpp"

#include <boost/test/unit_test.hpp>

#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace fleet = imagegate::fleet;
namespace redis = imagegate::redis;
using namespace std::chrono_literals;

namespace {

redis::reply ints(std::vector<std::int64_t> v) {
    std::vector<redis::reply> e;
    for (const auto x : v) {
        e.push_back(redis::reply::make_integer(x));
    }
    return redis::reply::make_array(std::move(e));
}

constexpr std::int64_t t = 1'700'000'000'000'000;  // a plausible Redis TIME in µs

fleet::reserve_request fg(std::chrono::microseconds max_wait, std::string key = "00ff") {
    return {.background = false, .max_wait = max_wait, .hold_key = std::move(key), .debt = 0};
}

fleet::reserve_request bg() { return {.background = true, .max_wait = 0us, .hold_key = {}}; }

struct decode_case {
    const char* name;
    redis::reply reply;
    fleet::reserve_request request;
    std::optional<fleet::reserve_reply> expected;  ///< nullopt: refused with `error`
    fleet::reply_error error = fleet::reply_error::wrong_shape;
};

std::string what(const decode_case& c) { return c.name; }

}  // namespace

BOOST_AUTO_TEST_CASE(decode_reserve_table) {
    using fleet::outcome;
    using fleet::reply_error;
    const auto ok = [](outcome o, std::int64_t wait, std::int64_t slot, std::int64_t tat) {
        return fleet::reserve_reply{
            .what = o, .wait = std::chrono::microseconds(wait), .slot_us = slot, .tat_us = tat};
    };
    const std::int64_t hour = 3'600'000'000;
    const decode_case cases[] = {
        // What the script returns.
        {"now", ints({0, 0, t, t + 100}), fg(0us), ok(outcome::granted_now, 0, t, t + 100)},
        {"queued", ints({1, 5000, t + 5000, t + 9000}), fg(5000us),
         ok(outcome::granted_queued, 5000, t + 5000, t + 9000)},
        {"vacant at now", ints({1, 0, t, 0}), fg(10us), ok(outcome::granted_queued, 0, t, 0)},
        {"held claimed", ints({2, 10, t, 0}), fg(10us), ok(outcome::granted_held, 10, t, 0)},
        {"refused", ints({3, 6000, t, 0}), fg(5000us), ok(outcome::refused, 6000, t, 0)},
        {"refused hold", ints({4, 6000, t, 0}), fg(5000us), ok(outcome::refused_hold, 6000, t, 0)},
        {"early", ints({5, 6000, t, 0}), fg(5000us), ok(outcome::refused_held, 6000, t, 0)},
        {"paused", ints({6, hour, 0, 0}), fg(0us), ok(outcome::paused, hour, 0, 0)},
        {"paused background", ints({6, 1, 0, 0}), bg(), ok(outcome::paused, 1, 0, 0)},
        {"now background", ints({0, 0, t, t + 1}), bg(), ok(outcome::granted_now, 0, t, t + 1)},
        {"reserve", ints({7, 300, 0, 0}), bg(), ok(outcome::reserve, 300, 0, 0)},
        // Shapes a hostile or broken server may send.
        {"error reply",
         redis::reply::make_error("ERR boom"),
         fg(0us),
         {},
         reply_error::error_reply},
        {"nil", redis::reply::make_nil(), fg(0us), {}, reply_error::wrong_shape},
        {"integer", redis::reply::make_integer(0), fg(0us), {}, reply_error::wrong_shape},
        {"status", redis::reply::make_status("OK"), fg(0us), {}, reply_error::wrong_shape},
        {"three", ints({0, 0, t}), fg(0us), {}, reply_error::wrong_shape},
        {"five", ints({0, 0, t, t + 1, 0}), fg(0us), {}, reply_error::wrong_shape},
        {"empty array", ints({}), fg(0us), {}, reply_error::wrong_shape},
        {"string element",
         redis::reply::make_array({redis::reply::make_string("0"), redis::reply::make_integer(0),
                                   redis::reply::make_integer(t), redis::reply::make_integer(t)}),
         fg(0us),
         {},
         reply_error::wrong_shape},
        {"nested array",
         redis::reply::make_array({ints({0}), ints({0}), ints({0}), ints({0})}),
         fg(0us),
         {},
         reply_error::wrong_shape},
        // Codes and ranges.
        {"code 8", ints({8, 0, t, t}), fg(0us), {}, reply_error::bad_outcome},
        {"code -1", ints({-1, 0, t, t}), fg(0us), {}, reply_error::bad_outcome},
        {"negative wait", ints({3, -1, t, 0}), fg(0us), {}, reply_error::out_of_range},
        {"wait beyond a day",
         ints({6, 25 * hour + 1, 0, 0}),
         fg(0us),
         {},
         reply_error::out_of_range},
        {"slot beyond 2^53",
         ints({1, 0, (std::int64_t{1} << 53) + 1, 0}),
         fg(1us),
         {},
         reply_error::out_of_range},
        {"negative tat", ints({0, 0, t, -5}), fg(0us), {}, reply_error::out_of_range},
        // Outcomes that contradict the call or their own fields: never a grant.
        {"queued for background", ints({1, 0, t, t}), bg(), {}, reply_error::bad_outcome},
        {"hold for background", ints({4, 10, t, 0}), bg(), {}, reply_error::bad_outcome},
        {"reserve for foreground", ints({7, 10, 0, 0}), fg(0us), {}, reply_error::bad_outcome},
        {"queued beyond max_wait",
         ints({1, 5001, t, t}),
         fg(5000us),
         {},
         reply_error::inconsistent},
        {"claim beyond max_wait", ints({2, 11, t, 0}), fg(10us), {}, reply_error::inconsistent},
        {"claim without a key", ints({2, 0, t, 0}), fg(10us, ""), {}, reply_error::inconsistent},
        {"now with a wait", ints({0, 1, t, t + 1}), fg(10us), {}, reply_error::inconsistent},
        {"now without tat", ints({0, 0, t, 0}), fg(0us), {}, reply_error::inconsistent},
        {"now without slot", ints({0, 0, 0, t}), fg(0us), {}, reply_error::inconsistent},
        {"refused within max_wait", ints({3, 10, t, 0}), fg(10us), {}, reply_error::inconsistent},
        {"early within max_wait", ints({5, 10, t, 0}), fg(10us), {}, reply_error::inconsistent},
        {"hold without a key", ints({4, 11, t, 0}), fg(10us, ""), {}, reply_error::inconsistent},
        {"paused for nothing", ints({6, 0, 0, 0}), fg(0us), {}, reply_error::inconsistent},
        {"reserve for nothing", ints({7, 0, 0, 0}), bg(), {}, reply_error::inconsistent},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(what(c)) {
            const auto got = fleet::decode_reserve(c.reply, c.request);
            if (c.expected) {
                BOOST_TEST_REQUIRE(got.has_value());
                BOOST_TEST((*got == *c.expected));
            } else {
                BOOST_TEST_REQUIRE(got.has_error());
                BOOST_TEST((got.error() == c.error));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(decode_give_back_table) {
    using fleet::give_back_result;
    BOOST_TEST((fleet::decode_give_back(redis::reply::make_integer(0)) == give_back_result::lost));
    BOOST_TEST(
        (fleet::decode_give_back(redis::reply::make_integer(1)) == give_back_result::given_back));
    BOOST_TEST(
        (fleet::decode_give_back(redis::reply::make_integer(2)) == give_back_result::vacant));
    for (const auto& bad :
         {redis::reply::make_integer(3), redis::reply::make_integer(-1), redis::reply::make_nil(),
          redis::reply::make_string("1"), redis::reply::make_error("ERR x"), ints({1})}) {
        BOOST_TEST((fleet::decode_give_back(bad) == give_back_result::failed));
    }
}

BOOST_AUTO_TEST_CASE(keys_share_one_hash_tag) {
    const auto k = fleet::keys_for("ig", "token");
    BOOST_TEST(k.budget == "ig:budget:{token}");
    BOOST_TEST(k.holds == "ig:budget:{token}:holds");
    BOOST_TEST(k.vacant == "ig:budget:{token}:vacant");
    BOOST_TEST(k.block == "ig:block:{token}");
    // The cluster hash tag is the first {...}: the same for all four keys.
    for (const auto* key : {&k.budget, &k.holds, &k.vacant, &k.block}) {
        const auto open = key->find('{');
        BOOST_TEST(key->substr(open, key->find('}') - open + 1) == "{token}");
    }
    const unsigned char digest[3] = {0x00, 0xab, 0xff};
    BOOST_TEST(fleet::hex(digest, 3) == "00abff");
}

BOOST_AUTO_TEST_CASE(hold_keys_are_stable_and_distinct) {
    // FNV-1a 64 of "a" (published test vector): the same on every instance and build.
    BOOST_TEST(fleet::hold_key("a") == "af63dc4c8601ec8c");
    BOOST_TEST(fleet::hold_key("") == "");
    BOOST_TEST(fleet::hold_key("acct/img1") != fleet::hold_key("acct/img2"));
    BOOST_TEST(fleet::hold_key("acct/img1").size() == 16U);
}

BOOST_AUTO_TEST_CASE(reserve_arguments) {
    const fleet::script_budget b{.interval_us = 300'000,
                                 .burst = 50,
                                 .reserve = 10,
                                 .hold_horizon_us = 60'000'000,
                                 .hold_grace_us = 500'000,
                                 .max_holds = 1024};
    const auto fg_args = fleet::reserve_args(b, fg(5'000'000us, "k1"));
    const std::vector<std::string> want{"300000", "50",       "10",     "0",    "5000000",
                                        "k1",     "60000000", "500000", "1024", "0"};
    BOOST_TEST(fg_args == want, boost::test_tools::per_element());
    // Background: never waits and never holds, whatever the request says.
    auto r = bg();
    r.max_wait = 1s;
    r.hold_key = "k2";
    r.debt = 3;
    const auto bg_args = fleet::reserve_args(b, r);
    BOOST_TEST(bg_args[3] == "1");
    BOOST_TEST(bg_args[4] == "0");
    BOOST_TEST(bg_args[5] == "");
    BOOST_TEST(bg_args[9] == "3");
}

BOOST_AUTO_TEST_CASE(fallback_is_one_nth_at_least_one) {
    fleet::fleet_gate_options o;
    o.gate.budget = {.budget = 1000, .window = 5min, .burst = 50};
    o.gate.unproven_budget = 600;
    o.instances = 3;
    auto l = fleet::fallback_options(o);
    BOOST_TEST(l.budget.budget == 333U);
    BOOST_TEST(l.budget.burst == 16U);
    BOOST_TEST(l.unproven_budget == 200U);
    BOOST_TEST((l.budget.window == 5min));
    o.instances = 100;
    l = fleet::fallback_options(o);
    BOOST_TEST(l.budget.budget == 10U);
    BOOST_TEST(l.budget.burst == 1U);
    o.instances = 5000;
    l = fleet::fallback_options(o);
    BOOST_TEST(l.budget.budget == 1U);
    BOOST_TEST(l.budget.burst == 1U);
    BOOST_TEST(l.unproven_budget == 1U);
    o.instances = 0;
    BOOST_CHECK_THROW(fleet::fallback_options(o), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(pause_table_extends_confirms_and_bounds) {
    using tp = std::chrono::steady_clock::time_point;
    const tp now = tp{} + 1000h;
    fleet::pause_table p(2);
    BOOST_TEST(p.extend("token", now, now + 30s, false));
    BOOST_TEST(!p.extend("token", now, now + 10s, false));  // never shortened
    BOOST_TEST((*p.blocked_for("token", now) == 30s));
    BOOST_TEST(!p.blocked_for("token", now + 30s).has_value());  // ends at its instant
    // Unconfirmed pauses are handed out once to be written, and again after a failure.
    auto pending = p.take_unconfirmed(now);
    BOOST_TEST_REQUIRE(pending.size() == 1U);
    BOOST_TEST(pending[0].quota == "token");
    BOOST_TEST(p.take_unconfirmed(now).empty());
    p.unconfirm("token", now + 30s);
    BOOST_TEST(p.take_unconfirmed(now).size() == 1U);
    p.confirm("token", now + 30s);
    BOOST_TEST(p.take_unconfirmed(now).empty());
    // Bounded: a third quota pushes out an ended pause first, else the one ending soonest.
    BOOST_TEST(p.extend("a", now, now + 5s, true));
    BOOST_TEST(p.extend("b", now + 6s, now + 60s, true));  // "a" ended: dropped
    BOOST_TEST(p.paused(now + 6s) == 2U);
    BOOST_TEST(p.extend("c", now + 6s, now + 90s, true));  // "token" ends soonest
    BOOST_TEST(!p.blocked_for("token", now + 6s).has_value());
    BOOST_TEST(p.blocked_for("b", now + 6s).has_value());
    BOOST_TEST(p.blocked_for("c", now + 6s).has_value());
}

BOOST_AUTO_TEST_CASE(scripts_are_distinct_and_hashed) {
    BOOST_TEST(fleet::reserve_script().sha1().size() == 40U);
    BOOST_TEST(fleet::reserve_script().sha1() != fleet::give_back_script().sha1());
    BOOST_TEST(fleet::block_script().sha1() != fleet::give_back_script().sha1());
    // Redis TIME is the only clock: no script reads an instance's time from ARGV.
    BOOST_TEST(fleet::reserve_script().body().find("redis.call('TIME')") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(decode_block_table) {
    const auto cap = std::chrono::milliseconds(3'600'000);
    BOOST_TEST(fleet::decode_block(redis::reply::make_integer(0), cap)->count() == 0);
    BOOST_TEST(fleet::decode_block(redis::reply::make_integer(30'000), cap)->count() == 30'000);
    // Longer than the cap: honoured up to the cap, never forever.
    BOOST_TEST(fleet::decode_block(redis::reply::make_integer(1LL << 50), cap)->count() ==
               3'600'000);
    BOOST_TEST(!fleet::decode_block(redis::reply::make_integer(-2), cap).has_value());
    BOOST_TEST(!fleet::decode_block(redis::reply::make_string("5"), cap).has_value());
    BOOST_TEST(!fleet::decode_block(redis::reply::make_error("ERR"), cap).has_value());
    BOOST_TEST(!fleet::decode_block(redis::reply::make_nil(), cap).has_value());
}
