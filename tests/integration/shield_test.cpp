// The shield end to end: single-flight under a herd, a leader that hangs up, stale serving
// (RFC 5861) and negative caching, against the emulator with scripted faults.
#define BOOST_TEST_MODULE shield_test
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/herd.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>

#include <sys/resource.h>

#include <algorithm>

namespace ts = imagegate::testing;
using ts::contains;
using namespace std::chrono_literals;

namespace bdata = boost::unit_test::data;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized_build = true;
#else
constexpr bool sanitized_build = false;
#endif

// A herd of 500 plus the gateway's own sockets, in one process: lift the soft fd limit.
struct raise_fd_limit {
    raise_fd_limit() {
        rlimit rl{};
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
            rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4096);
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
};
BOOST_TEST_GLOBAL_FIXTURE(raise_fd_limit);

struct fixture : ts::emulated_upstream {
    void fault(ts::fault_kind k, const std::string& id, unsigned status = 500) {
        ts::fault_rule f;
        f.kind = k;
        f.image_id = id;
        f.status = status;
        emu->add_fault(f);
    }
};

}  // namespace

// One worker or two (each an io_context run by one thread; a miss runs on the worker of its
// session, its followers are woken on theirs): both must collapse.
BOOST_DATA_TEST_CASE_F(fixture, herd_of_500_costs_one_upstream_call, bdata::make({1u, 2u}),
                       threads) {
    settings.server.threads = threads;
    ts::gateway_runner gw(settings);
    // Steady state: every worker already holds a pooled upstream connection (each has a pool
    // of its own; a request per connection reaches them in turn).
    for (unsigned i = 0; i < threads; ++i) {
        BOOST_TEST(gw.get(gw.image_path("warm-up-" + std::to_string(i))).status == 200u);
    }
    delay("cold", 200ms);
    const std::vector<std::string> targets(500, gw.image_path("cold"));
    const auto results = ts::run_herd(gw.app().data_port(), targets);
    std::size_t ok = 0;
    std::size_t collapsed = 0;
    for (const auto& r : results) {
        ok += r.status == 200 ? 1 : 0;
        collapsed += contains(r.cache_status, "collapsed") ? 1 : 0;
    }
    BOOST_TEST(ok == 500u);
    BOOST_TEST(emu->requests_for("cold") == 1u);
    BOOST_TEST(collapsed >= 400u);  // a few may arrive after the answer was stored (hits)
    const auto median = ts::median_latency(results);
    std::vector<long> lat;
    for (const auto& r : results) {
        lat.push_back(static_cast<long>(r.latency.count()));
    }
    std::sort(lat.begin(), lat.end());
    BOOST_TEST_MESSAGE("herd latency us: min " << lat.front() << " p10 " << lat[50] << " p50 "
                                               << median.count() << " p90 " << lat[450] << " max "
                                               << lat.back());
    // Followers are woken when the one fetch completes: not after a second fetch (>= 400 ms)
    // and not by polling a lock (nginx: >= 500 ms). Unloaded, the median is 205-225 ms here;
    // the bound leaves room for a busy machine (two CPU hogs beside the test: up to 277 ms).
    // The latency target itself (delay + 10 ms) is the benchmark's, taken with pinned CPUs
    // (tests/bench). Under a sanitizer every instruction costs several times more.
    BOOST_TEST((median < (sanitized_build ? 400ms : 350ms)));
}

BOOST_FIXTURE_TEST_CASE(leader_hang_up_does_not_fail_followers, fixture) {
    ts::gateway_runner gw(settings);
    delay("shared", 300ms);
    // The first 5 clients send and hang up at once; one of them leads the flight.
    const std::vector<std::string> targets(20, gw.image_path("shared"));
    const auto results = ts::run_herd(gw.app().data_port(), targets, 5);
    for (std::size_t i = 5; i < results.size(); ++i) {
        BOOST_TEST(results[i].status == 200u);
    }
    BOOST_TEST(emu->requests_for("shared") == 1u);
    // And the answer was stored.
    BOOST_TEST(contains(gw.get(gw.image_path("shared")).header("Cache-Status"), "hit"));
}

BOOST_FIXTURE_TEST_CASE(stale_while_revalidate_answers_at_once_and_refreshes_once, fixture) {
    settings.cache.ttl = 200ms;
    settings.cache.stale_while_revalidate = 10s;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("swr")).status == 200u);
    gw.app().time().advance(250ms);  // the clock, not a sleep
    delay("swr", 300ms);             // the refresh is slow; stale answers must not wait for it
    for (int i = 0; i < 5; ++i) {
        const auto start = std::chrono::steady_clock::now();
        const auto r = gw.get(gw.image_path("swr"));
        BOOST_TEST(r.status == 200u);
        BOOST_TEST(contains(r.header("Cache-Status"), "fwd=stale"));
        const auto cs = r.header("Cache-Status");
        BOOST_TEST(std::stoi(cs.substr(cs.find("ttl=") + 4)) <= 0);
        BOOST_TEST(std::stoi(r.header("Age")) >= 0);
        BOOST_TEST((std::chrono::steady_clock::now() - start < 150ms));
    }
    BOOST_TEST(ts::eventually(
        [&] { return contains(gw.get(gw.image_path("swr")).header("Cache-Status"), "hit"); }));
    BOOST_TEST(emu->requests_for("swr") == 2u);  // the first fetch and exactly one refresh
}

BOOST_FIXTURE_TEST_CASE(stale_if_error_on_500_timeout_and_invalid_json, fixture) {
    settings.cache.ttl = 150ms;
    settings.cache.stale_while_revalidate = 0ms;
    settings.cache.stale_if_error = 1h;
    settings.upstream.request_timeout = 300ms;
    ts::gateway_runner gw(settings);
    struct row {
        std::string id;
        ts::fault_kind kind;
    };
    const row rows[] = {{"sie-500", ts::fault_kind::status},
                        {"sie-timeout", ts::fault_kind::hang},
                        {"sie-json", ts::fault_kind::invalid_json}};
    for (const auto& r : rows) {
        BOOST_TEST(gw.get(gw.image_path(r.id)).status == 200u);
    }
    gw.app().time().advance(200ms);  // the clock, not a sleep
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.id) {
            fault(r.kind, r.id);
            const auto res = gw.get(gw.image_path(r.id));
            BOOST_TEST(res.status == 200u);
            BOOST_TEST(contains(res.header("Cache-Status"), "fwd=stale"));
            BOOST_TEST(contains(res.header("Cache-Status"), "detail=stale-if-error"));
            BOOST_TEST(contains(res.body, "\"id\":\"" + r.id + "\""));
        }
    }
}

BOOST_FIXTURE_TEST_CASE(negative_entries_expire, fixture) {
    ts::emulator_runner strict;
    ts::temp_dir d;
    auto s = ts::gateway_settings(*strict, d);
    s.cache.negative_ttl = 200ms;
    ts::gateway_runner gw(s);
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST(gw.get(gw.image_path("ghost")).status == 404u);
    }
    BOOST_TEST(strict->requests_for("ghost") == 1u);
    gw.app().time().advance(250ms);  // the clock, not a sleep
    BOOST_TEST(gw.get(gw.image_path("ghost")).status == 404u);
    BOOST_TEST(strict->requests_for("ghost") == 2u);
}

// A burst of SDK retries for a key whose fetch just failed costs no upstream call: the
// failure is remembered for a second (never stored), then the next request fetches again.
BOOST_FIXTURE_TEST_CASE(errors_are_remembered_for_a_second_only, fixture) {
    settings.cache.stale_if_error = 0ms;
    ts::gateway_runner gw(settings);
    ts::fault_rule f;
    f.kind = ts::fault_kind::status;
    f.image_id = "flaky";
    f.status = 503;
    f.times = 2;  // the first attempt and its one retry
    emu->add_fault(f);
    const auto first = gw.get(gw.image_path("flaky"));
    BOOST_TEST(first.status == 502u);
    BOOST_TEST(first.header("x-should-retry").empty());  // a 5xx may pass: SDKs may retry
    BOOST_TEST(emu->requests_for("flaky") == 2u);        // one retry, never more
    const std::vector<std::string> burst(20, gw.image_path("flaky"));
    for (const auto& r : ts::run_herd(gw.app().data_port(), burst)) {
        BOOST_TEST(r.status == 502u);
        BOOST_TEST(r.retry_after == "1");
    }
    BOOST_TEST(emu->requests_for("flaky") == 2u);
    BOOST_TEST(gw.metric("imagegate_remembered_failures_total") == 20);
    BOOST_TEST(ts::eventually([&] { return gw.get(gw.image_path("flaky")).status == 200u; }));
    BOOST_TEST(emu->requests_for("flaky") == 3u);
}

namespace {

std::vector<std::string> distinct_targets(ts::gateway_runner& gw, std::string_view prefix,
                                          int first, int count) {
    std::vector<std::string> t;
    for (int i = first; i < first + count; ++i) {
        t.push_back(gw.image_path(std::string(prefix) + std::to_string(i)));
    }
    return t;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(a_flood_of_distinct_ids_stays_inside_the_budget, fixture) {
    settings.shield.burst = 5;
    settings.shield.budget = 20;
    settings.shield.window = 1s;  // one token per 50 ms
    settings.upstream.request_timeout = 400ms;
    ts::gateway_runner gw(settings);
    const auto start = std::chrono::steady_clock::now();
    const auto results = ts::run_herd(gw.app().data_port(), distinct_targets(gw, "flood-", 0, 200));
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto calls = emu->snapshot().requests;
    BOOST_TEST_MESSAGE("flood: " << calls << " upstream calls in " << elapsed << " s");
    BOOST_TEST(calls <= 5 + 20 * elapsed + 1);
    BOOST_TEST(calls >= 5u);
    std::size_t ok = 0;
    std::size_t refused = 0;
    for (const auto& r : results) {
        if (r.status == 200) {
            ++ok;
        } else if (r.status == 429) {
            ++refused;
            BOOST_TEST(std::stoi(r.retry_after) >= 1);
        }
    }
    BOOST_TEST(ok == calls);
    BOOST_TEST(ok + refused == results.size());
    BOOST_TEST(gw.metric("imagegate_budget_refused_total") == static_cast<double>(refused));
}

BOOST_FIXTURE_TEST_CASE(an_upstream_429_pauses_every_call_until_retry_after, fixture) {
    settings.cache.stale_if_error = 0ms;
    ts::gateway_runner gw(settings);
    ts::fault_rule f;
    f.kind = ts::fault_kind::rate_limited;
    f.image_id = "limited";
    f.retry_after = 1;
    f.times = 1;
    emu->add_fault(f);
    const auto first = gw.get(gw.image_path("limited"));
    BOOST_TEST(first.status == 429u);
    BOOST_TEST(first.header("Retry-After") == "1");
    BOOST_TEST(contains(first.body, R"("code":99429)"));
    // Other ids too: the upstream blocks the whole token, so the gateway makes no call.
    const auto other = gw.get(gw.image_path("other"));
    BOOST_TEST(other.status == 429u);
    BOOST_TEST(std::stoi(other.header("Retry-After")) >= 1);
    BOOST_TEST(emu->requests_for("other") == 0u);
    gw.app().time().advance(1100ms);  // the clock, not a sleep
    BOOST_TEST(gw.get(gw.image_path("other")).status == 200u);
    BOOST_TEST(emu->requests_for("other") == 1u);
    BOOST_TEST(gw.metric("imagegate_upstream_429_total") == 1);
}

BOOST_FIXTURE_TEST_CASE(stale_entries_are_answered_while_paused, fixture) {
    settings.cache.ttl = 100ms;
    settings.cache.stale_while_revalidate = 0ms;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("kept")).status == 200u);
    ts::fault_rule f;
    f.kind = ts::fault_kind::rate_limited;
    f.retry_after = 30;
    f.times = 1;
    emu->add_fault(f);
    BOOST_TEST(gw.get(gw.image_path("trigger")).status == 429u);
    gw.app().time().advance(150ms);  // the clock, not a sleep
    const auto r = gw.get(gw.image_path("kept"));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.header("Cache-Status"), "detail=stale-if-error"));
    BOOST_TEST(emu->requests_for("kept") == 1u);
}

BOOST_AUTO_TEST_CASE(a_sustained_flood_of_5000_ids_never_trips_the_upstream_limit) {
    // The emulator enforces a scaled-down Cloudflare rule (60 calls per 2 s, then blocked);
    // the gateway's budget is set below it, as the defaults are below 1200 per 5 minutes: at
    // most 10 + 40 calls in any 2 s, leaving room for the emulator seeing calls late (it
    // counts arrivals; a slowed process, e.g. under TSan, receives them in bunches).
    ts::emulator_options eo;
    eo.any_image_exists = true;
    eo.rate_limit = 60;
    eo.rate_window = 2s;
    ts::emulator_runner emu(eo);
    ts::temp_dir dir;
    auto s = ts::gateway_settings(*emu, dir);
    s.shield.budget = 40;
    s.shield.window = 2s;
    s.shield.burst = 10;
    s.upstream.request_timeout = 300ms;
    ts::gateway_runner gw(s);
    const auto start = std::chrono::steady_clock::now();
    std::size_t ok = 0;
    std::size_t timed_out = 0;
    for (int batch = 0; batch < 10; ++batch) {
        const auto results = ts::run_herd(gw.app().data_port(),
                                          distinct_targets(gw, "sustained-", batch * 500, 500));
        for (const auto& r : results) {
            ok += r.status == 200 ? 1 : 0;
            timed_out += r.status == 504 ? 1 : 0;
        }
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto snap = emu->snapshot();
    BOOST_TEST_MESSAGE("sustained: " << snap.requests << " calls, " << ok << " answered in "
                                     << elapsed << " s");
    BOOST_TEST(emu->tripped() == 0u);
    BOOST_TEST(snap.requests <= 10 + 20 * elapsed + 1);
    // Every upstream call is answered: 200, or 504 when it outlasted request_timeout, which
    // only a sanitizer's slowdown makes happen here.
    BOOST_TEST(ok <= snap.requests);
    BOOST_TEST(snap.requests <= ok + timed_out);
    if (!sanitized_build) {
        BOOST_TEST(ok == snap.requests);
    }
}

BOOST_FIXTURE_TEST_CASE(client_no_cache_is_ignored_unless_enabled, fixture) {
    {
        ts::gateway_runner gw(settings);
        BOOST_TEST(gw.get(gw.image_path("nc")).status == 200u);
        const auto r = gw.get(gw.image_path("nc"), {{"Cache-Control", "no-cache"}});
        BOOST_TEST(contains(r.header("Cache-Status"), "hit"));
        BOOST_TEST(emu->requests_for("nc") == 1u);
    }
    settings.shield.honor_client_no_cache = true;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("nc2")).status == 200u);
    const auto r = gw.get(gw.image_path("nc2"), {{"Cache-Control", "no-cache"}});
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.header("Cache-Status"), "fwd=stale"));
    BOOST_TEST(emu->requests_for("nc2") == 2u);
}
