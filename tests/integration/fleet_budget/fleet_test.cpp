// Three instances (each its own io_context, thread and Redis client) sharing one budget in a
// real redis-server: a flood of distinct keys stays within burst + rate × T in every window;
// a 429 seen by one pauses the other two; a killed Redis leaves each on 1/N (never open) and
// a restarted one is used again; a stalled Redis costs a reservation at most op_timeout.
#define BOOST_TEST_MODULE fleet_budget_test
#include "fixture.hpp"

#include <boost/test/unit_test.hpp>

#include <thread>

using namespace imagegate;
using namespace imagegate::fleet::test;

namespace {

/// Floods all three instances for `length`, one thread each; returns every granted slot.
std::vector<clock::time_point> flood_all(std::array<instance*, 3> fleet, flood_log& log,
                                         clock::duration length) {
    const auto end = clock::now() + length;
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < fleet.size(); ++i) {
        threads.emplace_back([&, i] { flood(*fleet[i], log, "i" + std::to_string(i), 6, end); });
    }
    for (auto& t : threads) {
        t.join();
    }
    const std::lock_guard lock(log.mu);
    for (const auto& f : log.failures) {
        BOOST_TEST_MESSAGE("flood client failed: " << f);
    }
    BOOST_TEST(log.failures.empty());
    return log.slots;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(fleet_of_three)

BOOST_AUTO_TEST_CASE(flood_stays_within_the_fleet_budget) {
    redis::test::redis_server server;
    const auto o = test_options("f1", 3);
    instance a(server.port(), o);
    instance b(server.port(), o);
    instance c(server.port(), o);
    BOOST_TEST_REQUIRE((a.wait_up() && b.wait_up() && c.wait_up()));
    flood_log log;
    const auto slots = flood_all({&a, &b, &c}, log, 2500ms);
    const double elapsed = 2.5;
    BOOST_TEST_MESSAGE("fleet flood: " << slots.size() << " granted, " << log.refused.load()
                                       << " refused, " << log.claims.load() << " of "
                                       << log.returns.load() << " returning clients claimed");
    // Slots are instants on the shared steady clock, each at most one reply transit after
    // its Redis TIME slot (one call of slack), and a held slot may be claimed up to
    // hold_grace late (documented: hold_grace / interval calls, one here).
    BOOST_TEST(worst_window_excess(slots, 5, interval, 2.0) <= 0.0);
    // Clients that came back when told found their held slot.
    BOOST_TEST(log.returns.load() > 0U);
    BOOST_TEST(static_cast<double>(log.claims.load()) >=
               0.9 * static_cast<double>(log.returns.load()));
    // The flood did press on the budget: most of it was used, much was refused.
    const double budget = 5 + elapsed / 0.1;
    BOOST_TEST(static_cast<double>(slots.size()) >= 0.7 * budget);
    BOOST_TEST(log.refused.load() > 0U);
    for (auto* in : {&a, &b, &c}) {
        BOOST_TEST(!in->gate.stats().on_fallback.load());
        BOOST_TEST(in->gate.stats().decisions->granted_now.load() +
                       in->gate.stats().decisions->granted_queued.load() +
                       in->gate.stats().decisions->granted_held.load() >
                   0U);
        BOOST_TEST(in->gate.fallback().stats().granted_now.load() == 0U);
    }
}

BOOST_AUTO_TEST_CASE(a_429_on_one_pauses_all) {
    redis::test::redis_server server;
    const auto o = test_options("f2", 3);
    instance a(server.port(), o);
    instance b(server.port(), o);
    instance c(server.port(), o);
    BOOST_TEST_REQUIRE((a.wait_up() && b.wait_up() && c.wait_up()));
    BOOST_TEST(b.spend(fg("warm")));
    const auto pause = a.gate.observe(
        nullptr, {.status = 429, .retry_after = "30", .ratelimit = {}, .ratelimit_policy = {}});
    BOOST_TEST_REQUIRE(pause.has_value());
    // A stops at once, before its write reached Redis.
    auto local = a.reserve(fg("x"));
    BOOST_TEST((local.reason() == adm::refusal::paused));
    BOOST_TEST((local.retry_wait() > 29s));
    BOOST_TEST(a.settle([&] { return a.gate.stats().block_writes.load() == 1; }));
    // B and C refuse on their next call, with the pause's remaining time.
    for (auto* in : {&b, &c}) {
        auto t = in->reserve(fg("y", 1s));
        BOOST_TEST((t.reason() == adm::refusal::paused));
        BOOST_TEST((t.retry_wait() > 28s));
        BOOST_TEST((t.retry_wait() <= 30s));
        // Background too, and the pause is remembered locally from then on.
        BOOST_TEST((in->reserve(bg("z")).reason() == adm::refusal::paused));
    }
    // A shorter pause seen by a fourth instance does not shorten the fleet's, and the fourth
    // learns the longer one from its write.
    instance d(server.port(), o);
    BOOST_TEST_REQUIRE(d.wait_up());
    d.gate.observe(nullptr,
                   {.status = 429, .retry_after = "5", .ratelimit = {}, .ratelimit_policy = {}});
    BOOST_TEST(d.settle([&] { return d.gate.stats().block_writes.load() == 1; }));
    BOOST_TEST(std::stoll(server.command({"PTTL", "f2:block:{token}"}).substr(1)) > 25'000);
    BOOST_TEST((d.reserve(fg("w")).retry_wait() > 25s));
}

BOOST_AUTO_TEST_CASE(a_low_ratelimit_on_one_pauses_all) {
    redis::test::redis_server server;
    const auto o = test_options("f3", 3);
    instance a(server.port(), o);
    instance b(server.port(), o);
    BOOST_TEST_REQUIRE((a.wait_up() && b.wait_up()));
    // 3 left of 1200 is under the safety margin: paused until the reset, 12 s.
    const auto pause = a.gate.observe(nullptr, {.status = 200,
                                                .retry_after = {},
                                                .ratelimit = "\"default\";r=3;t=12",
                                                .ratelimit_policy = {}});
    BOOST_TEST_REQUIRE(pause.has_value());
    BOOST_TEST(a.settle([&] { return a.gate.stats().block_writes.load() == 1; }));
    auto t = b.reserve(fg("y"));
    BOOST_TEST((t.reason() == adm::refusal::paused));
    BOOST_TEST((t.retry_wait() > 11s));
    BOOST_TEST((t.retry_wait() <= 12s));
}

BOOST_AUTO_TEST_CASE(a_pause_seen_while_redis_is_down_is_shared_when_it_is_back) {
    redis::test::redis_server server;
    const auto o = test_options("f6", 3);
    instance a(server.port(), o);
    BOOST_TEST_REQUIRE(a.wait_up());
    server.kill();
    a.idle(50ms);
    a.gate.observe(nullptr,
                   {.status = 429, .retry_after = "30", .ratelimit = {}, .ratelimit_policy = {}});
    BOOST_TEST(a.settle([&] { return a.stats().block_write_failures.load() == 1; }));
    server.restart();
    BOOST_TEST_REQUIRE(a.wait_up());
    a.idle(o.retry_interval);
    // Still paused locally; the refusal writes the pause Redis never saw.
    BOOST_TEST((a.reserve(fg("x")).reason() == adm::refusal::paused));
    BOOST_TEST(a.settle([&] { return a.stats().block_writes.load() == 1; }));
    instance b(server.port(), o);
    BOOST_TEST_REQUIRE(b.wait_up());
    auto t = b.reserve(fg("y"));
    BOOST_TEST((t.reason() == adm::refusal::paused));
    BOOST_TEST((t.retry_wait() > 28s));
}

BOOST_AUTO_TEST_CASE(redis_killed_each_falls_back_to_one_nth_then_recovers) {
    redis::test::redis_server server;
    const auto o = test_options("f4", 3);
    instance a(server.port(), o);
    instance b(server.port(), o);
    instance c(server.port(), o);
    BOOST_TEST_REQUIRE((a.wait_up() && b.wait_up() && c.wait_up()));
    for (auto* in : {&a, &b, &c}) {
        BOOST_TEST(in->spend(fg("warm")));
    }
    server.kill();
    flood_log log;
    const auto slots = flood_all({&a, &b, &c}, log, 2000ms);
    const double elapsed = 2.0 + 0.15;  // the last slots may be up to max_wait after the end
    BOOST_TEST_MESSAGE("fallback flood: " << slots.size() << " granted, " << log.refused.load()
                                          << " refused");
    // Each instance: 20 / 3 = 6 per 2 s (one per 334 ms), burst 1, drained at the switch.
    // Together never more than the fleet's budget, in any window.
    BOOST_TEST(worst_window_excess(slots, 5, interval, 1.0) <= 0.0);
    BOOST_TEST(static_cast<double>(slots.size()) <= 3 * (1 + elapsed / 0.334));
    BOOST_TEST(!slots.empty());
    for (auto* in : {&a, &b, &c}) {
        BOOST_TEST(in->gate.stats().on_fallback.load());
        BOOST_TEST(in->gate.stats().fallback_down.load() > 0U);
        // The local budget granted them (at once, queued, or on a slot held for the key).
        const auto& local = in->gate.fallback().stats();
        BOOST_TEST(local.granted_now.load() + local.granted_queued.load() +
                       local.granted_held.load() >
                   0U);
    }
    // Restarted: each instance uses the shared budget again once its client is back.
    server.restart();
    for (auto* in : {&a, &b, &c}) {
        BOOST_TEST_REQUIRE(in->wait_up());
        in->idle(o.retry_interval);
        const auto before = in->gate.stats().decisions->granted_now.load() +
                            in->gate.stats().decisions->granted_queued.load() +
                            in->gate.stats().decisions->refused[1].load();
        auto t = in->reserve(fg("back", 1s));
        BOOST_TEST(!in->gate.stats().on_fallback.load());
        const auto after = in->gate.stats().decisions->granted_now.load() +
                           in->gate.stats().decisions->granted_queued.load() +
                           in->gate.stats().decisions->refused[1].load();
        BOOST_TEST(after == before + 1);
    }
    // The calls granted locally were charged to the fresh fleet budget (debt).
    const auto tat = server.command({"GET", "f4:budget:{token}"});
    BOOST_TEST(tat.rfind("$", 0) == 0U);
}

BOOST_AUTO_TEST_CASE(a_stalled_redis_costs_at_most_op_timeout) {
    redis::test::redis_server server;
    auto o = test_options("f5", 3);
    o.op_timeout = 100ms;
    instance a(server.port(), o);
    BOOST_TEST_REQUIRE(a.wait_up());
    BOOST_TEST(a.spend(fg("warm")));
    server.pause();
    auto started = clock::now();
    auto t = a.reserve(fg("x"));
    const auto first = clock::now() - started;
    BOOST_TEST((first >= o.op_timeout));
    BOOST_TEST((first < o.op_timeout + 50ms));
    BOOST_TEST(a.gate.stats().fallback_timeout.load() == 1U);
    BOOST_TEST(a.gate.stats().on_fallback.load());
    // Until retry_interval is over, the next calls do not wait for Redis at all.
    started = clock::now();
    auto t2 = a.reserve(fg("y"));
    BOOST_TEST((clock::now() - started) < 10ms);
    // Drained at the switch: the local bucket grants nothing at once (never open).
    BOOST_TEST(!t2.granted());
    server.resume();
    BOOST_TEST_REQUIRE(a.wait_up());
    a.idle(o.retry_interval);
    auto t3 = a.reserve(fg("z", 1s));
    BOOST_TEST(!a.gate.stats().on_fallback.load());
    std::string metrics;
    a.gate.render_metrics(metrics);
    BOOST_TEST(metrics.find("imagegate_fleet_budget_fallback_total{reason=\"timeout\"} 1") !=
               std::string::npos);
    BOOST_TEST(metrics.find("imagegate_fleet_budget_on_fallback 0") != std::string::npos);
    BOOST_TEST(metrics.find("imagegate_fleet_budget_script_seconds_count") != std::string::npos);
    BOOST_TEST(metrics.find("imagegate_budget_reservations_total") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
