// The shield under overload, end to end (issue 12, scaled down to seconds): a flood of cold
// ids is answered at once — admitted ones 200, every other one 429 with a truthful
// Retry-After, never 504 — clients that come back when told get their slot, a queued fetch
// every client left gives its slot back, and a paused credential survives a flood of made-up
// ones in passthrough mode.
#define BOOST_TEST_MODULE overload_test
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/herd.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <map>

namespace ts = imagegate::testing;
using ts::contains;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized_build = true;
#else
constexpr bool sanitized_build = false;
#endif

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

std::vector<std::string> distinct_targets(std::string_view prefix, int count) {
    std::vector<std::string> t;
    for (int i = 0; i < count; ++i) {
        t.push_back(ts::gateway_runner::image_path(std::string(prefix) + std::to_string(i)));
    }
    return t;
}

std::string id_of(const std::string& target) { return target.substr(target.rfind('/') + 1); }

}  // namespace

// The issue's reproduction: budget 20 per 10 s, burst 5, 200 concurrent cold ids. Before: 25
// answered 200, 175 waited the whole coalesce timeout for a 504.
BOOST_FIXTURE_TEST_CASE(two_hundred_cold_ids_are_answered_at_once_and_truthfully,
                        ts::emulated_upstream) {
    settings.shield.budget = 20;
    settings.shield.window = 10s;  // one slot per 500 ms
    settings.shield.burst = 5;
    settings.shield.max_queue_wait = 1s;
    ts::gateway_runner gw(settings);
    const auto targets = distinct_targets("cold-", 200);
    const auto start = steady::now();
    const auto results = ts::run_herd(gw.app().data_port(), targets);
    const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
    const auto calls = emu->snapshot().requests;
    std::size_t ok = 0;
    std::size_t refused = 0;
    std::vector<std::chrono::microseconds> refusal_latency;
    std::size_t explained = 0;
    for (std::size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        BOOST_TEST_CONTEXT(id_of(targets[i])) {
            BOOST_TEST(r.status != 504u);
            if (r.status == 200) {
                ++ok;
                BOOST_TEST(emu->requests_for(id_of(targets[i])) == 1u);
                continue;
            }
            BOOST_TEST(r.status == 429u);
            ++refused;
            BOOST_TEST(std::stoi(r.retry_after) >= 1);
            BOOST_TEST(std::stoi(r.retry_after_ms) >= 1000);
            BOOST_TEST(r.should_retry.empty());  // a 429 may be retried (later)
            BOOST_TEST(emu->requests_for(id_of(targets[i])) == 0u);
            refusal_latency.push_back(r.latency);
            // Never after waiting for a slot (the first one is 500 ms away).
            BOOST_TEST((r.latency < 500ms));
            explained += contains(r.cache_status, "reason=queue_full") ? 1 : 0;
        }
    }
    BOOST_TEST_MESSAGE("flood: " << ok << " admitted, " << refused << " refused, " << calls
                                 << " upstream calls in " << elapsed << " s");
    // Exactly the admitted ones get 200: the burst and the slots within the 1 s queue cap
    // (5 + 2 when the herd arrives within 500 ms, which a sanitizer may stretch).
    BOOST_TEST(ok == calls);
    BOOST_TEST(ok + refused == results.size());
    BOOST_TEST(ok >= 7u);
    if (!sanitized_build) {
        BOOST_TEST(ok == 7u);
    }
    BOOST_TEST(calls <= 5 + 20 * elapsed / 10 + 1);  // the GCRA bound
    // Answered at once: 95 % within 100 ms measured by the one client thread that reads all
    // 200 answers (a busy machine can stall that thread; the soak checks p99 < 50 ms).
    std::sort(refusal_latency.begin(), refusal_latency.end());
    const auto p95 = refusal_latency.at(refusal_latency.size() * 95 / 100);
    BOOST_TEST_MESSAGE("refusal latency p95 " << p95.count() << " us, max "
                                              << refusal_latency.back().count() << " us");
    BOOST_TEST((p95 < (sanitized_build ? 300ms : 100ms)));
    BOOST_TEST(explained == refused);  // the access log and Cache-Status say why
    BOOST_TEST(gw.metric("imagegate_budget_refused_total") == static_cast<double>(refused));
    BOOST_TEST(gw.metric("imagegate_budget_refusals_total{reason=\"queue_full\"}") ==
               static_cast<double>(refused));
    BOOST_TEST(gw.metric("imagegate_budget_queue_depth") == 0);
    // A slot is held for each refused id up to 60 s ahead: slots 1.5 s .. 60 s, 500 ms apart.
    const double holds = gw.metric("imagegate_budget_held_slots");
    BOOST_TEST(holds >= 110);
    BOOST_TEST(holds <= 120);
}

// Truthful Retry-After: a refused client that comes back after retry-after-ms (as the SDKs
// read it) finds its slot; the next ones in line find theirs.
BOOST_FIXTURE_TEST_CASE(clients_that_come_back_when_told_get_their_slot, ts::emulated_upstream) {
    settings.shield.budget = 40;
    settings.shield.window = 4s;  // one slot per 100 ms
    settings.shield.burst = 5;
    settings.shield.max_queue_wait = 1s;
    ts::gateway_runner gw(settings);
    const auto targets = distinct_targets("back-", 60);
    const auto sent = steady::now();
    const auto first = ts::run_herd(gw.app().data_port(), targets);
    // The refused ones, by when they were told to come back: the answer's arrival (sent +
    // its latency; a little early, as the connects are not counted) + retry-after-ms.
    std::multimap<steady::time_point, std::string> returns;
    for (std::size_t i = 0; i < first.size(); ++i) {
        BOOST_TEST(first[i].status != 504u);
        if (first[i].status == 429) {
            returns.emplace(sent + first[i].latency +
                                std::chrono::milliseconds(std::stoll(first[i].retry_after_ms)),
                            targets[i]);
        }
    }
    BOOST_TEST_REQUIRE(returns.size() >= 40u);
    std::size_t got = 0;
    for (const auto& [when, target] : returns) {
        std::this_thread::sleep_until(when);  // the client honours the header
        const auto r = gw.get(target);
        got += r.status == 200 ? 1 : 0;
        BOOST_TEST(r.status == 200u, id_of(target) << ": " << r.status);
    }
    BOOST_TEST(got == returns.size());
    BOOST_TEST(gw.metric("imagegate_budget_reservations_total{outcome=\"held\"}") ==
               static_cast<double>(returns.size()));
}

// A queued fetch whose every client hung up gives its slot back: a new miss afterwards is
// served at once (before: abandoned fetches kept competing; one new miss took 5.2 s).
BOOST_FIXTURE_TEST_CASE(a_fetch_every_client_left_gives_its_slot_back, ts::emulated_upstream) {
    settings.shield.budget = 5;
    settings.shield.window = 10s;  // one slot per 2 s
    settings.shield.burst = 1;
    settings.shield.max_queue_wait = 3s;
    ts::gateway_runner gw(settings);
    const auto start = steady::now();
    BOOST_TEST(gw.get(gw.image_path("first")).status == 200u);  // the only token
    // Five clients ask for "gone" (queued for start + 2 s) and hang up at once.
    const std::vector<std::string> herd(5, gw.image_path("gone"));
    ts::run_herd(gw.app().data_port(), herd, herd.size(), 2s);
    // Every client is seen leaving; the last one on a flight ends its fetch (a client whose
    // request arrived after that starts a fetch of its own, abandoned the same way).
    BOOST_TEST(ts::eventually([&] { return gw.metric("imagegate_clients_gone_total") == 5; }));
    BOOST_TEST(ts::eventually([&] { return gw.metric("imagegate_budget_queue_depth") == 0; }));
    const double abandoned = gw.metric("imagegate_fetches_abandoned_total");
    BOOST_TEST(abandoned >= 1);
    BOOST_TEST(gw.metric("imagegate_budget_abandoned_total") == abandoned);
    // Past the slot "gone" gave back, a new miss finds it: served at once.
    std::this_thread::sleep_until(start + 2100ms);
    const auto asked = steady::now();
    const auto r = gw.get(gw.image_path("next"));
    const auto took = steady::now() - asked;
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(
        (took < (sanitized_build ? 600ms : 300ms)),
        "took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    BOOST_TEST(emu->requests_for("gone") == 0u);
}

// Passthrough: credential A is paused by an upstream 429 (Retry-After 120); a flood of
// made-up credentials must not push A's shield out of the bounded table. Before: A went
// upstream again ~70 s early.
BOOST_AUTO_TEST_CASE(the_pause_survives_a_flood_of_made_up_credentials) {
    ts::emulator_options eo = ts::any_image();
    eo.credentials = {{.token = "good-token-0123456789", .email = {}, .key = {}, .accounts = {}}};
    eo.unknown_credential_status = 401;
    ts::emulator_runner emu(eo);
    ts::temp_dir dir;
    auto s = ts::gateway_settings(*emu, dir);
    s.auth.mode = "passthrough";
    s.shield.max_credentials = 32;
    s.shield.unproven_budget = 100000;  // let the made-up ones reach the table
    s.shield.burst = 50;
    ts::gateway_runner gw(s);
    const ts::header_list good = {{"Authorization", "Bearer good-token-0123456789"}};
    ts::fault_rule f;
    f.kind = ts::fault_kind::rate_limited;
    f.image_id = "limited";
    f.retry_after = 120;
    f.times = 1;
    emu->add_fault(f);
    BOOST_TEST(gw.get(gw.image_path("limited"), good).status == 429u);
    BOOST_TEST(gw.metric("imagegate_upstream_paused") == 1);
    std::size_t refused_full = 0;
    for (int wave = 0; wave < 5; ++wave) {
        std::vector<std::string> targets;
        std::vector<std::string> headers;
        for (int i = 0; i < 100; ++i) {
            const auto n = std::to_string(wave * 100 + i);
            targets.push_back(gw.image_path("flood-" + n));
            headers.push_back("Authorization: Bearer made-up-credential-" + n + "\r\n");
        }
        for (const auto& r : ts::run_herd(gw.app().data_port(), targets, 0, 20s, headers)) {
            BOOST_TEST((r.status == 401u || r.status == 429u));
            refused_full += contains(r.cache_status, "reason=credentials_full") ? 1 : 0;
        }
    }
    BOOST_TEST(refused_full > 0u);  // the table was full of shields that had to be kept
    BOOST_TEST(gw.metric("imagegate_passthrough_credentials") <= 32);
    // A is still paused: no upstream call, the truthful wait, the gauge.
    const auto r = gw.get(gw.image_path("after-flood"), good);
    BOOST_TEST(r.status == 429u);
    BOOST_TEST(contains(r.body, R"("code":99429)"));
    BOOST_TEST(std::stoi(r.header("Retry-After")) > 100);
    BOOST_TEST(emu->requests_for("after-flood") == 0u);
    BOOST_TEST(gw.metric("imagegate_upstream_paused") == 1);
}
