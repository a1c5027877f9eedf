// One instance against a real redis-server: the script's schedule (burst, queued slots, held
// slots claimed by their key, background reserve, truthful waits), give-back to the bucket and
// to a vacancy, hostile state in Redis, a lost script cache, and passthrough quotas.
#include "fixture.hpp"

#include "gateway/fleet/budget_script.hpp"

#include <boost/test/unit_test.hpp>

using namespace imagegate;
using namespace imagegate::fleet::test;

namespace {

/// `actual` lies in [expected - 30 ms, expected + 30 ms]: reply transit on loopback.
bool near(clock::duration actual, clock::duration expected) {
    return actual >= expected - 30ms && actual <= expected + 30ms;
}

std::uint64_t refused(const fleet::fleet_gate& g, adm::refusal r) {
    return g.stats().decisions->refused[static_cast<std::size_t>(r)].load();
}

fleet::fleet_gate_options passthrough_options(std::string prefix) {
    auto o = test_options(std::move(prefix));
    o.gate.passthrough = true;
    return o;
}

/// A caller credential whose digest starts with `tag`.
credential_digest credential(unsigned char tag) {
    credential_digest d{};
    d[0] = tag;
    return d;
}

/// A foreground call for key "k" with credential `d` (which must outlive it).
adm::call fg_with(const credential_digest& d) {
    auto c = fg("k");
    c.credential = &d;
    return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(fleet_schedule)

BOOST_AUTO_TEST_CASE(burst_queue_hold_and_reserve) {
    redis::test::redis_server server;
    instance a(server.port(), test_options("s1"));
    BOOST_TEST_REQUIRE(a.wait_up());
    const auto t0 = clock::now();
    // Background may take the bucket down to its reserve (1 of 5), not further.
    for (int i = 0; i < 4; ++i) {
        BOOST_TEST(a.spend(bg("b")));
    }
    auto b5 = a.reserve(bg("b5"));
    BOOST_TEST((b5.reason() == adm::refusal::reserve));
    BOOST_TEST((near(b5.retry_wait(), interval)));
    // Foreground takes the last token, then queues within its max_wait.
    BOOST_TEST(a.spend(fg("f1")));
    auto q = a.reserve(fg("q", 250ms));
    BOOST_TEST_REQUIRE(q.granted());
    BOOST_TEST(near(q.slot() - t0, interval));
    // Beyond max_wait: refused with the slot held for the key.
    auto h = a.reserve(fg("h", 50ms));
    BOOST_TEST((h.reason() == adm::refusal::queue_full));
    BOOST_TEST(h.held());
    BOOST_TEST((near(h.retry_wait(), 2 * interval)));
    // The same key back early: the same slot, nothing new reserved.
    auto early = a.reserve(fg("h", 0ms));
    BOOST_TEST((early.reason() == adm::refusal::held));
    BOOST_TEST((early.retry_wait() <= h.retry_wait()));
    // Another key now queues behind the held slot, not onto it.
    auto other = a.reserve(fg("o", 1s));
    BOOST_TEST_REQUIRE(other.granted());
    BOOST_TEST(near(other.slot() - t0, 3 * interval));
    // The key within reach of its slot: granted on it.
    auto claim = a.reserve(fg("h", 1s));
    BOOST_TEST_REQUIRE(claim.granted());
    BOOST_TEST(claim.held());
    BOOST_TEST(near(claim.slot() - t0, 2 * interval));
    BOOST_TEST(a.stats().decisions->granted_held.load() == 1U);
    BOOST_TEST(refused(a.gate, adm::refusal::held) == 1U);
    q.commit();
    other.commit();
    claim.commit();
    // Both the budget and the holds keys expire by themselves.
    const auto ttl = server.command({"PTTL", "s1:budget:{token}"});
    BOOST_TEST(ttl.front() == ':');
    BOOST_TEST(std::stoll(ttl.substr(1)) > 0);
    BOOST_TEST(std::stoll(server.command({"PTTL", "s1:budget:{token}:holds"}).substr(1)) <= 0);
}

BOOST_AUTO_TEST_CASE(a_refusal_tells_the_truth) {
    redis::test::redis_server server;
    instance a(server.port(), test_options("s2"));
    BOOST_TEST_REQUIRE(a.wait_up());
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST(a.spend(fg("")));
    }
    auto r = a.reserve(fg(""));  // no key: nothing held
    BOOST_TEST_REQUIRE(!r.granted());
    BOOST_TEST(!r.held());
    // Coming back after the wait it was told finds a slot (nobody else took it).
    std::this_thread::sleep_for(r.retry_wait());
    BOOST_TEST(a.spend(fg("")));
}

BOOST_AUTO_TEST_CASE(give_back_to_the_bucket_and_to_a_vacancy) {
    redis::test::redis_server server;
    instance a(server.port(), test_options("s3"));
    BOOST_TEST_REQUIRE(a.wait_up());
    for (int i = 0; i < 4; ++i) {
        BOOST_TEST(a.spend(fg("")));
    }
    {
        auto last = a.reserve(fg("last"));
        BOOST_TEST_REQUIRE(last.granted());
        last.release();  // the last slot handed out: back to the bucket
    }
    BOOST_TEST(a.settle([&] { return a.stats().given_back.load() == 1; }));
    BOOST_TEST(a.spend(fg("again")));
    // Two queued slots; the earlier one given back becomes a vacancy the next call takes.
    auto q1 = a.reserve(fg("q1", 1s));
    auto q2 = a.reserve(fg("q2", 1s));
    BOOST_TEST_REQUIRE(q1.granted());
    BOOST_TEST_REQUIRE(q2.granted());
    const auto q1_slot = q1.slot();
    q1.release();
    BOOST_TEST(a.settle([&] { return a.stats().vacated.load() == 1; }));
    auto q3 = a.reserve(fg("q3", 1s));
    BOOST_TEST_REQUIRE(q3.granted());
    BOOST_TEST((q3.slot() < q2.slot()));
    BOOST_TEST(near(q3.slot() - q1_slot, 0ms));
    q2.commit();
    q3.commit();
}

BOOST_AUTO_TEST_CASE(hostile_state_never_grants) {
    redis::test::redis_server server;
    instance a(server.port(), test_options("s4"));
    BOOST_TEST_REQUIRE(a.wait_up());
    // Garbage where the schedule should be: read as an empty bucket, not a full one.
    server.command({"SET", "s4:budget:{token}", "garbage", "PX", "60000"});
    auto t = a.reserve(fg("x"));
    BOOST_TEST(!t.granted());
    BOOST_TEST(!a.stats().on_fallback.load());
    // A key of the wrong type makes the script fail: the local 1/N budget decides instead.
    server.command({"SET", "s4:budget:{token}:holds", "not-a-zset"});
    auto f = a.reserve(fg("y"));
    BOOST_TEST(a.stats().fallback_invalid.load() == 1U);
    BOOST_TEST(a.stats().on_fallback.load());
    // The local budget starts drained after the fleet's was in use: never open.
    BOOST_TEST(!f.granted());
}

BOOST_AUTO_TEST_CASE(a_lost_script_cache_is_reloaded) {
    redis::test::redis_server server;
    instance a(server.port(), test_options("s5"));
    BOOST_TEST_REQUIRE(a.wait_up());
    BOOST_TEST(a.spend(fg("a")));
    const auto reloads = a.cl.stats().noscript_reloads.load();  // the first call loaded it
    server.command({"SCRIPT", "FLUSH"});
    BOOST_TEST(a.spend(fg("b")));
    BOOST_TEST(a.cl.stats().noscript_reloads.load() == reloads + 1);
    BOOST_TEST(!a.stats().on_fallback.load());
}

BOOST_AUTO_TEST_CASE(passthrough_quotas_per_credential) {
    redis::test::redis_server server;
    auto o = passthrough_options("s6");
    o.gate.unproven_budget = 3;
    instance a(server.port(), o);
    BOOST_TEST_REQUIRE(a.wait_up());
    const auto x = credential(0xab);
    const auto y = credential(0xcd);
    const auto call_x = fg_with(x);
    const auto call_y = fg_with(y);
    // Each credential has its own fleet budget of 5 back to back.
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST(a.spend(call_x));
    }
    BOOST_TEST(!a.spend(call_x));
    BOOST_TEST(a.spend(call_y));
    // Keys name the digest in hex, never the credential.
    const std::string hex_x = fleet::hex(x.data(), x.size());
    BOOST_TEST(server.command({"EXISTS", "s6:budget:{" + hex_x + "}"}) == ":1");
    // Unproven credentials share a local budget (3 here) before reaching Redis.
    auto unproven = fg("");
    unproven.credential = &y;
    unproven.proven = false;
    int granted = 0;
    for (int i = 0; i < 4; ++i) {
        granted += a.spend(unproven) ? 1 : 0;
    }
    BOOST_TEST(granted == 3);
    BOOST_TEST(refused(a.gate, adm::refusal::unproven) == 1U);
    // A 429 for x pauses x only.
    a.gate.observe(&x,
                   {.status = 429, .retry_after = "20", .ratelimit = {}, .ratelimit_policy = {}});
    BOOST_TEST(a.settle([&] { return a.stats().block_writes.load() == 1; }));
    BOOST_TEST((a.reserve(call_x).reason() == adm::refusal::paused));
    BOOST_TEST((a.reserve(call_y).reason() != adm::refusal::paused));
    BOOST_TEST(server.command({"EXISTS", "s6:block:{" + hex_x + "}"}) == ":1");
}

BOOST_AUTO_TEST_CASE(passthrough_fallback_starts_every_credential_empty) {
    redis::test::redis_server server;
    instance a(server.port(), passthrough_options("s7"));
    BOOST_TEST_REQUIRE(a.wait_up());
    const auto x = credential(0x11);
    const auto z = credential(0x22);
    const auto call_x = fg_with(x);
    const auto call_z = fg_with(z);
    BOOST_TEST(a.spend(call_x));  // through Redis: the fleet budget is in use
    // x's schedule unusable: the script fails and the local 1/N budget decides.
    const std::string hex_x = fleet::hex(x.data(), x.size());
    server.command({"SET", "s7:budget:{" + hex_x + "}:holds", "not-a-zset"});
    auto t = a.reserve(call_x);
    BOOST_TEST_REQUIRE(a.stats().on_fallback.load());
    // Never open: x's local bucket starts empty, and so does that of z, first seen during the
    // outage (the fleet may have granted both their bursts just before).
    BOOST_TEST(!t.granted());
    BOOST_TEST(!a.reserve(call_z).granted());
}

BOOST_AUTO_TEST_CASE(resize_keeps_what_the_fleet_spent) {
    redis::test::redis_server server;
    instance a(server.port(), test_options("s9", 2));
    instance b(server.port(), test_options("s9", 2));
    BOOST_TEST_REQUIRE(a.wait_up());
    BOOST_TEST_REQUIRE(b.wait_up());
    // The whole burst (5 at 100 ms), spent by `a`.
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST_REQUIRE(a.spend(fg("k" + std::to_string(i))));
    }
    // Half the budget (200 ms a call), applied by `a` only so far: its next reservation finds
    // the schedule written in 100 ms and counts the 5 calls again at 200 ms: 1 s ahead,
    // 800 ms tolerated, so the wait is 200 ms, not the 0 the raw schedule would give.
    a.gate.resize({.budget = 10, .window = 2s, .burst = 5, .unproven_budget = 600});
    auto r = a.reserve(fg("x"));
    BOOST_TEST((r.reason() == adm::refusal::queue_full));
    BOOST_TEST(near(r.retry_wait(), 2 * interval), r.retry_wait().count());
    BOOST_TEST(server.command({"GET", "s9:budget:{token}:interval"}) == "$6\n200000");
    // `b` still runs the old sizes: it converts the schedule back (5 calls at 100 ms, 500 ms
    // ahead against 400 ms tolerated): the fleet never grants from a unit mix-up.
    auto rb = b.reserve(fg("y"));
    BOOST_TEST(!rb.granted());
    // Raised back by both: a full second later, everything refilled.
    a.gate.resize({.budget = 20, .window = 2s, .burst = 5, .unproven_budget = 600});
    b.gate.resize({.budget = 20, .window = 2s, .burst = 5, .unproven_budget = 600});
    a.idle(1100ms);
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST(b.spend(fg("z" + std::to_string(i))));
    }
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

/// `n` reservations one after another on `g` (each committed); their latencies, sorted.
asio::awaitable<std::vector<double>> timed_reservations(fleet::fleet_gate* g, int n) {
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        const std::string key = "k" + std::to_string(i);
        const auto started = clock::now();
        auto t = co_await g->reserve(fg(key));
        us.push_back(std::chrono::duration<double, std::micro>(clock::now() - started).count());
        t.commit();
    }
    std::sort(us.begin(), us.end());
    co_return us;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(fleet_cost)

// The price of a fleet reservation over loopback: one EVALSHA round trip (p50/p99 reported;
// tests/bench/PERFORMANCE.md records a run).
BOOST_AUTO_TEST_CASE(reservation_round_trip) {
    redis::test::redis_server server;
    auto o = test_options("c1");
    o.gate.budget = {.budget = 1'000'000, .window = 10s, .burst = 1'000'000};
    instance a(server.port(), o);
    BOOST_TEST_REQUIRE(a.wait_up());
    const auto us = run(a.ioc, timed_reservations(&a.gate, 5000));
    const double p50 = us[us.size() / 2];
    const double p99 = us[us.size() * 99 / 100];
    BOOST_TEST_MESSAGE("fleet reservation over loopback: p50 "
                       << p50 << " us, p99 " << p99 << " us, max " << us.back() << " us ("
                       << us.size() << " sequential)");
    BOOST_TEST(a.stats().decisions->granted_now.load() == 5000U);
    BOOST_TEST(!a.stats().on_fallback.load());
    BOOST_TEST(p99 < 100'000.0);  // well under the usual op_timeout (100 ms)
}

BOOST_AUTO_TEST_SUITE_END()
