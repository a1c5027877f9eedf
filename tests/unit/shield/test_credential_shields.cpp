// Passthrough's per-credential shields with an injected clock: one budget and pause per
// credential, memory bounded without ever forgetting a shield that matters (paused, bucket not
// full, in use), new credentials refused with a truthful wait when all must be kept, and room
// kept for proven credentials.
#include "gateway/shield/credential_shields.hpp"
#include "print.hpp"

#include <boost/test/unit_test.hpp>

#include <stdexcept>

namespace imagegate::shield {
namespace {

using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);

credential_digest digest(unsigned n) {
    credential_digest d{};
    d[0] = static_cast<unsigned char>(n);
    d[1] = static_cast<unsigned char>(n >> 8);
    d[31] = static_cast<unsigned char>(n ^ 0x5a);
    return d;
}

// One token per second, two back to back: a bucket is full again 2 s after its last call.
credential_shields_options small_shields(std::size_t max, std::uint64_t unproven_share = 100) {
    credential_shields_options o;
    o.budget = {.budget = 10, .window = 10s, .burst = 2, .background_reserve_percent = 0};
    o.max_credentials = max;
    o.unproven_share_percent = unproven_share;
    return o;
}

std::shared_ptr<credential_shield> get(credential_shields& s, unsigned n, time_point at) {
    return s.get(digest(n), at, true).shield;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(credential_shields_table)

BOOST_AUTO_TEST_CASE(each_credential_has_its_own_budget) {
    credential_shields shields(small_shields(16));
    auto a = get(shields, 1, t0);
    BOOST_TEST(a->budget.try_acquire(t0, priority::foreground).granted);
    BOOST_TEST(a->budget.try_acquire(t0, priority::foreground).granted);
    BOOST_TEST(!a->budget.try_acquire(t0, priority::foreground).granted);
    // Another caller is not affected by the first one's spending.
    BOOST_TEST(get(shields, 2, t0)->budget.try_acquire(t0, priority::foreground).granted);
    // The same credential gets the same (empty) bucket back.
    BOOST_TEST(get(shields, 1, t0).get() == a.get());
    BOOST_TEST(shields.find(digest(1), t0).get() == a.get());
    BOOST_TEST(shields.find(digest(3), t0) == nullptr);  // find never creates
    BOOST_TEST(shields.size() == 2u);
}

BOOST_AUTO_TEST_CASE(an_upstream_pause_is_per_credential) {
    credential_shields shields(small_shields(16));
    get(shields, 1, t0)->limit.pause_until(t0, 30s);
    BOOST_TEST(get(shields, 1, t0 + 1s)->limit.is_paused(t0 + 1s));
    BOOST_TEST(!get(shields, 2, t0 + 1s)->limit.is_paused(t0 + 1s));
    BOOST_TEST(shields.paused(t0 + 1s) == 1u);
    BOOST_TEST(shields.limit_counters().upstream_429s == 1u);
}

// A table of one: whether credential N survives credential N+1 says whether it must be kept.
BOOST_AUTO_TEST_CASE(what_must_be_kept) {
    credential_shields shields(small_shields(1));
    // Unused, bucket full, not paused: a fresh shield behaves the same, it may go.
    get(shields, 1, t0);
    BOOST_TEST(get(shields, 2, t0) != nullptr);
    BOOST_TEST(shields.find(digest(1), t0) == nullptr);
    // In use (a fetch or a reservation holds it): kept.
    auto held = get(shields, 3, t0);
    BOOST_TEST(shields.get(digest(4), t0, true).shield == nullptr);
    held.reset();
    BOOST_TEST(get(shields, 4, t0 + 1s) != nullptr);
    // Paused: kept until the pause ends, and the refusal says when that is.
    get(shields, 4, t0 + 1s)->limit.pause_until(t0 + 1s, 30s);
    const auto refused = shields.get(digest(5), t0 + 2s, true);
    BOOST_TEST(refused.shield == nullptr);
    BOOST_TEST(refused.retry_at == t0 + 31s);
    BOOST_TEST(get(shields, 5, t0 + 31s) != nullptr);
    // Its bucket not full again (a token spent, queued or held): kept until it is.
    BOOST_TEST(
        get(shields, 5, t0 + 31s)->budget.try_acquire(t0 + 31s, priority::foreground).granted);
    BOOST_TEST(shields.get(digest(6), t0 + 31500ms, true).retry_at == t0 + 32s);
    BOOST_TEST(get(shields, 6, t0 + 32s) != nullptr);
}

BOOST_AUTO_TEST_CASE(a_full_table_drops_shields_that_need_not_be_kept) {
    credential_shields shields(small_shields(3));
    for (unsigned i = 1; i <= 10; ++i) {
        BOOST_TEST(get(shields, i, t0) != nullptr);
        BOOST_TEST(shields.size() <= 3u);
    }
    BOOST_TEST(shields.size() == 3u);
    BOOST_CHECK_THROW(credential_shields(small_shields(0)), std::invalid_argument);
    BOOST_CHECK_THROW(credential_shields(small_shields(4, 0)), std::invalid_argument);
    BOOST_CHECK_THROW(credential_shields(small_shields(4, 101)), std::invalid_argument);
}

// Issue 12: a credential paused by an upstream 429 was pushed out of the table by a flood of
// made-up credentials and went upstream again 70 s early.
BOOST_AUTO_TEST_CASE(a_paused_shield_survives_a_flood_of_new_credentials) {
    credential_shields shields(small_shields(4));
    get(shields, 1, t0)->limit.pause_until(t0, 120s);
    unsigned refused = 0;
    for (unsigned i = 2; i < 5000; ++i) {
        const time_point at = t0 + std::chrono::milliseconds(i * 11);  // 5000 in 55 s
        const auto got = shields.get(digest(i), at, false);
        if (!got.shield) {
            ++refused;
            continue;
        }
        // Each new credential makes a call: its bucket is not full for a while.
        got.shield->budget.try_acquire(at, priority::foreground);
    }
    BOOST_TEST(refused > 0u);
    const auto a = shields.find(digest(1), t0 + 55s);
    BOOST_TEST_REQUIRE(a != nullptr);
    BOOST_TEST(a->limit.blocked_for(t0 + 55s).value() == duration(65s));
    BOOST_TEST(shields.paused(t0 + 55s) == 1u);
}

BOOST_AUTO_TEST_CASE(when_everything_must_be_kept_new_credentials_get_the_truthful_wait) {
    credential_shields shields(small_shields(2));
    get(shields, 1, t0)->limit.pause_until(t0, 60s);
    BOOST_TEST(get(shields, 2, t0)->budget.try_acquire(t0, priority::foreground).granted);
    // Credential 2's bucket is full again at t0 + 1 s (burst 2, one token spent).
    auto refused = shields.get(digest(3), t0 + 200ms, true);
    BOOST_TEST(refused.shield == nullptr);
    BOOST_TEST(refused.retry_at == t0 + 1s);
    // Asked again before then: the same answer without scanning the table.
    BOOST_TEST(shields.get(digest(4), t0 + 500ms, true).retry_at == t0 + 1s);
    // Known credentials are never refused.
    BOOST_TEST(shields.get(digest(1), t0 + 500ms, true).shield != nullptr);
    // Once credential 2 may go, the newcomer takes its place; 1 (paused) stays.
    BOOST_TEST(shields.get(digest(3), t0 + 1s, true).shield != nullptr);
    BOOST_TEST(shields.find(digest(2), t0 + 1s) == nullptr);
    BOOST_TEST(shields.find(digest(1), t0 + 1s) != nullptr);
}

BOOST_AUTO_TEST_CASE(credentials_without_a_proof_leave_room_for_proven_ones) {
    credential_shields shields(small_shields(4, 50));  // unproven: 2 of 4
    auto a = shields.get(digest(1), t0, false).shield;
    auto b = shields.get(digest(2), t0, false).shield;
    BOOST_TEST(shields.get(digest(3), t0, false).shield == nullptr);
    BOOST_TEST(shields.get(digest(4), t0, true).shield != nullptr);
    BOOST_TEST(shields.get(digest(5), t0, true).shield != nullptr);
    // Full: the unused proven shield 4 makes room; the two held ones stay.
    BOOST_TEST(shields.get(digest(6), t0, true).shield != nullptr);
    BOOST_TEST(shields.find(digest(4), t0) == nullptr);
    BOOST_TEST(shields.size() == 4u);
}

BOOST_AUTO_TEST_CASE(idle_shields_are_forgotten_one_per_new_credential) {
    credential_shields shields(small_shields(16));
    get(shields, 1, t0);
    get(shields, 2, t0)->limit.pause_until(t0, 60s);
    get(shields, 3, t0 + 5s);
    // A window (10 s) after its last use, 1 goes when a new credential comes; 2 is paused
    // and stays (and keeps the idle sweep behind it).
    get(shields, 4, t0 + 11s);
    BOOST_TEST(shields.size() == 3u);
    BOOST_TEST(shields.find(digest(1), t0 + 11s) == nullptr);
    get(shields, 5, t0 + 12s);
    BOOST_TEST(shields.size() == 4u);
    // Counters of dropped shields are kept.
    get(shields, 6, t0 + 61s);  // 2's pause is over: it goes
    BOOST_TEST(shields.find(digest(2), t0 + 61s) == nullptr);
    BOOST_TEST(shields.limit_counters().upstream_429s == 1u);
}

BOOST_AUTO_TEST_CASE(start_empty_drains_tracked_and_new_shields_until_turned_off) {
    credential_shields shields(small_shields(16));
    auto a = get(shields, 1, t0);  // full (2 tokens)
    shields.start_empty(true, t0);
    // The tracked shield is empty now, and so is one first seen while it is on.
    BOOST_TEST(!a->budget.try_acquire(t0, priority::foreground).granted);
    auto b = get(shields, 2, t0 + 100ms);
    BOOST_TEST(!b->budget.try_acquire(t0 + 100ms, priority::foreground).granted);
    // Both refill at the budget's rate from then on (one token per second).
    BOOST_TEST(a->budget.try_acquire(t0 + 1s, priority::foreground).granted);
    BOOST_TEST(b->budget.try_acquire(t0 + 1100ms, priority::foreground).granted);
    // Turned off: new credentials start full again; the others keep their state.
    shields.start_empty(false, t0 + 2s);
    auto c = get(shields, 3, t0 + 2s);
    BOOST_TEST(c->budget.try_acquire(t0 + 2s, priority::foreground).granted);
    BOOST_TEST(c->budget.try_acquire(t0 + 2s, priority::foreground).granted);
    BOOST_TEST(!b->budget.try_acquire(t0 + 1100ms, priority::foreground).granted);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::shield
