// The fleet tier end to end: three real imagegate processes sharing one real redis-server,
// in front of the in-process emulator. One upstream call for a cold herd, L2 hits, purge
// broadcast, hostile L2 values, and Redis killed, restarted and paused under traffic.
#define BOOST_TEST_MODULE fleet_test
#include "gateway/fleet/l2_codec.hpp"
#include "gateway/image/route.hpp"
#include "gateway/warm/cli.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/integration/gateway_process.hpp"
#include "tests/support/herd.hpp"
#include "tests/support/redis_server.hpp"

#include <boost/beast/http/verb.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace ts = imagegate::testing;
namespace fleet = imagegate::fleet;
using ts::contains;
using namespace std::chrono_literals;
using verb = boost::beast::http::verb;

namespace {

const std::string admin_token = "fleet-test-admin-token-7d1e";

/// One imagegate process of the fleet.
struct instance : ts::gateway_process {
    ts::response get(const std::string& id) const {
        return ts::request(data, verb::get, ts::gateway_runner::image_path(id));
    }
    ts::response readyz() const { return ts::request(admin, verb::get, "/readyz"); }
    ts::response purge(const std::string& id) const {
        return ts::request(admin, verb::delete_,
                           "/cache/accounts/" + ts::test_account + "/images/" + id,
                           {{"Authorization", "Bearer " + admin_token}});
    }
    ts::response admin_call(verb method, const std::string& target) const {
        return ts::request(admin, method, target, {{"Authorization", "Bearer " + admin_token}});
    }
    // Warms the test account (ten pages of 10) and waits for the job to end; GET /cache/warm.
    std::string warm_to_end() const {
        const auto started =
            admin_call(verb::post, "/cache/warm?account=" + ts::test_account + "&per_page=10");
        BOOST_TEST(started.status == 202u, started.body);
        std::string shown;
        BOOST_REQUIRE(ts::eventually(
            [&] {
                shown = admin_call(verb::get, "/cache/warm").body;
                const auto j = imagegate::warm::find_job(shown, ts::test_account);
                return j && (j->state == "done" || j->state == "failed");
            },
            30s));
        return shown;
    }
};

/// Redis + emulator + three gateways. Every gateway: 2 threads, op_timeout 100 ms, lease 2 s.
struct fleet_fixture {
    /// `shield` is the [shield] section's keys (the default: a budget far above the cases'
    /// load); `more` is appended to the configuration (further sections).
    explicit fleet_fixture(std::string shield = default_shield, std::string more = {}) {
        const auto token_file = (up.dir.path() / "admin.token").string();
        ts::write_file(token_file, admin_token + "\n");
        std::filesystem::permissions(
            token_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        const auto& s = up.settings;
        config = (up.dir.path() / "fleet.toml").string();
        ts::write_file(config,
                       "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n"
                       "threads = 2\ndrain_timeout = \"2s\"\n"
                       "[upstream]\nurl = \"" +
                           s.upstream.url + "\"\nca_file = \"" + s.upstream.ca_file +
                           "\"\nrequest_timeout = \"3s\"\n"
                           "[shield]\n" +
                           shield +
                           "[log]\naccess_log = false\n"
                           "[admin]\ntoken_file = \"" +
                           token_file +
                           "\"\n"
                           "[redis]\nurl = \"redis://127.0.0.1:" +
                           std::to_string(redis.port()) +
                           "\"\nop_timeout = \"100ms\"\nconnect_timeout = \"200ms\"\n"
                           "[fleet]\ninstances = 3\nlease_timeout = \"2s\"\n" +
                           more);
        for (int i = 0; i < 3; ++i) {
            nodes.push_back(start(i));
        }
        for (const auto& n : nodes) {
            BOOST_REQUIRE(
                ts::eventually([&] { return contains(n.readyz().body, "\"fleet\":\"ok\""); }, 10s));
        }
    }

    instance start(int i) {
        return {ts::start_gateway_process(
            IMAGEGATE_BIN, config,
            {"PATH=/usr/bin:/bin", "CLOUDFLARE_API_TOKEN=" + up.settings.secret.upstream_token},
            up.dir.path() / ("gw" + std::to_string(i) + ".out"))};
    }

    std::string value_key(const std::string& id) const {
        return "imagegate:v1:{" + ts::test_account + ":" + id + "}";
    }

    // A budget far above these cases' load: they are about the cache tier; the fallback's
    // 1/N bucket starts empty, and at the default 1000 per 5 min it would space the
    // paused-Redis case's misses ~0.9 s apart.
    static constexpr const char* default_shield =
        "coalesce_timeout = \"10s\"\nbudget = 300000\nburst = 3000\n";

    ts::redis_server redis;
    ts::emulated_upstream up;
    std::string config;
    std::vector<instance> nodes;
};

}  // namespace

/// Entries fresh for 1 s, then answered stale while one refresh runs.
struct short_ttl_fleet : fleet_fixture {
    short_ttl_fleet()
        : fleet_fixture(default_shield,
                        "[cache]\nttl = \"1s\"\nstale_while_revalidate = \"60s\"\n") {}
};

BOOST_FIXTURE_TEST_SUITE(fleet_tier, fleet_fixture)

BOOST_AUTO_TEST_CASE(cold_herd_over_three_instances_costs_one_upstream_call) {
    const std::string id = "herd-cold-1";
    up.delay(id, 300ms);  // the herd arrives while the one fetch runs
    std::vector<std::vector<ts::herd_result>> results(3);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 3; ++i) {
        threads.emplace_back([&, i] {
            results[i] =
                ts::run_herd(nodes[i].data.port,
                             std::vector<std::string>(200, ts::gateway_runner::image_path(id)));
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    std::size_t ok = 0;
    std::size_t from_l2 = 0;
    for (const auto& r : results) {
        for (const auto& h : r) {
            ok += h.status == 200 ? 1 : 0;
            from_l2 += contains(h.cache_status, "l2-hit") ? 1 : 0;
        }
    }
    BOOST_TEST(ok == 600u);
    BOOST_TEST(up.emu->requests_for(id) == 1u);
    BOOST_TEST(from_l2 > 0u);  // the two instances that lost the lease answered from L2
}

BOOST_AUTO_TEST_CASE(one_instance_fetches_the_others_answer_from_l2) {
    const std::string id = "l2-shared-1";
    const auto a = nodes[0].get(id);
    BOOST_TEST(a.status == 200u);
    BOOST_TEST(contains(a.header("Cache-Status"), "fwd=miss"));
    BOOST_TEST(contains(a.header("Cache-Status"), "stored"));
    // The write is in the background: B and C may ask before it lands.
    BOOST_REQUIRE(ts::eventually([&] {
        return contains(redis.command({"EXISTS", value_key(id)}), ":1");
    }));
    for (std::size_t i = 1; i < 3; ++i) {
        const auto r = nodes[i].get(id);
        BOOST_TEST(r.status == 200u);
        BOOST_TEST(contains(r.header("Cache-Status"), "detail=l2-hit"), r.header("Cache-Status"));
        BOOST_TEST(r.body == a.body);
        BOOST_TEST(contains(nodes[i].get(id).header("Cache-Status"), "imagegate; hit"));
    }
    BOOST_TEST(up.emu->requests_for(id) == 1u);
    BOOST_TEST(nodes[1].metric("imagegate_fleet_l2_hits_total") >= 1);
}

BOOST_AUTO_TEST_CASE(every_fill_one_after_another_reaches_l2) {
    // Write-backs in flight are counted per worker and bounded (max_pending_writes): the
    // count must come back down after each one, or later fills are silently not shared.
    constexpr int n = 40;
    for (int i = 0; i < n; ++i) {
        const std::string id = "l2-each-" + std::to_string(i);
        BOOST_TEST(nodes[0].get(id).status == 200u);
        BOOST_TEST(ts::eventually([&] {
                       return contains(redis.command({"EXISTS", value_key(id)}), ":1");
                   }),
                   id);
    }
    BOOST_TEST(nodes[0].metric("imagegate_fleet_l2_writes_total") == n);
    BOOST_TEST(nodes[0].metric("imagegate_fleet_l2_writes_dropped_total") == 0);
    BOOST_TEST(nodes[0].metric("imagegate_fleet_l2_write_errors_total") == 0);
}

BOOST_FIXTURE_TEST_CASE(a_stale_key_is_refreshed_once_for_the_fleet, short_ttl_fleet) {
    // Every instance holds the key (A fetched it, B and C from L2), then it goes stale.
    const std::string id = "refresh-once-1";
    for (auto& n : nodes) {
        try {
            n.get(id);
        } catch (...) {
            const auto o = n.proc->output();
            BOOST_TEST_MESSAGE(o.substr(o.size() > 3000 ? o.size() - 3000 : 0));
        }
        BOOST_TEST(n.get(id).status == 200u);
        BOOST_TEST(ts::eventually([&] {
            return contains(redis.command({"EXISTS", value_key(id)}), ":1");
        }));
    }
    BOOST_TEST_REQUIRE(up.emu->requests_for(id) == 1u);
    std::this_thread::sleep_for(1200ms);
    // Each instance answers stale at once and refreshes in the background: the first through
    // the upstream, the others from the value it wrote to L2 (or by waiting for its lease).
    for (auto& n : nodes) {
        const auto r = n.get(id);
        BOOST_TEST(r.status == 200u);
        BOOST_TEST(contains(r.header("Cache-Status"), "stale-while-revalidate"),
                   r.header("Cache-Status"));
        BOOST_TEST(ts::eventually(
            [&] { return contains(n.get(id).header("Cache-Status"), "imagegate; hit"); }));
    }
    BOOST_TEST(up.emu->requests_for(id) == 2u);  // 1 fetch + 1 refresh, not 1 + 3
    double from_l2 = 0;
    for (const auto& n : nodes) {
        from_l2 += n.metric("imagegate_fleet_refreshes_from_l2_total");
    }
    BOOST_TEST(from_l2 == 2);
}

// A warm job on one instance writes every entry it stores to L2 too: the other instances
// answer every warmed id from L2 with no upstream call.
BOOST_AUTO_TEST_CASE(a_warm_job_on_one_instance_serves_the_others_from_l2) {
    const auto ids = up.emu->image_ids(ts::test_account);
    BOOST_REQUIRE(ids.size() == 100u);
    const std::string shown = nodes[0].warm_to_end();
    BOOST_TEST(contains(shown, R"("state":"done")"), shown);
    BOOST_TEST(contains(shown, R"("images_stored":100,)"), shown);
    BOOST_TEST(contains(shown, R"("l2_written":100,"l2_failed":0)"), shown);
    BOOST_TEST(nodes[0].metric("imagegate_warm_l2_written_total") == 100);
    BOOST_TEST(contains(redis.command({"EXISTS", value_key(ids.front())}), ":1"));
    // One SET with PX: the value never lives without its expiry.
    BOOST_TEST(!contains(redis.command({"PTTL", value_key(ids.back())}), ":-1"));
    up.emu->reset_counters();
    for (std::size_t i = 1; i < 3; ++i) {
        std::size_t from_l2 = 0;
        for (const auto& id : ids) {
            const auto r = nodes[i].get(imagegate::gateway::percent_encode(id));
            from_l2 +=
                r.status == 200 && contains(r.header("Cache-Status"), "detail=l2-hit") ? 1 : 0;
        }
        BOOST_TEST(from_l2 == ids.size());
    }
    BOOST_TEST(up.emu->snapshot().requests == 0u);
}

// Redis down: the job still stores every page in L1 and finishes, and the entries L2 could
// not take are counted (GET /cache/warm and the metrics), never retried behind the job's back.
BOOST_AUTO_TEST_CASE(a_warm_job_with_redis_down_fills_l1_and_counts_what_l2_missed) {
    redis.kill();
    const auto t0 = std::chrono::steady_clock::now();
    const std::string shown = nodes[0].warm_to_end();
    // Ten pages with Redis gone: each costs no more than its calls (the breaker is open).
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 10s));
    BOOST_TEST(contains(shown, R"("state":"done")"), shown);
    BOOST_TEST(contains(shown, R"("images_stored":100,)"), shown);
    BOOST_TEST(contains(shown, R"("l2_written":0,"l2_failed":100)"), shown);
    BOOST_TEST(nodes[0].metric("imagegate_warm_l2_failed_total") == 100);
    const auto ids = up.emu->image_ids(ts::test_account);
    up.emu->reset_counters();
    for (const auto& id : ids) {
        BOOST_TEST(
            contains(nodes[0].get(imagegate::gateway::percent_encode(id)).header("Cache-Status"),
                     "imagegate; hit"));
    }
    BOOST_TEST(up.emu->snapshot().requests == 0u);
}

BOOST_AUTO_TEST_CASE(a_purge_on_one_instance_reaches_all_three_within_100ms) {
    const std::string id = "purge-1";
    BOOST_TEST(nodes[0].get(id).status == 200u);
    BOOST_REQUIRE(ts::eventually([&] {
        return contains(redis.command({"EXISTS", value_key(id)}), ":1");
    }));
    for (auto& n : nodes) {
        BOOST_TEST(contains(n.get(id).header("Cache-Status"), "hit"));  // in every L1 now
    }
    std::vector<double> before;
    for (auto& n : nodes) {
        before.push_back(n.metric("imagegate_fleet_purge_events_received_total"));
    }
    const auto start = std::chrono::steady_clock::now();
    const auto p = nodes[0].purge(id);
    BOOST_TEST(p.status == 200u, p.body);
    BOOST_TEST(contains(redis.command({"EXISTS", value_key(id)}), ":0"));
    for (std::size_t i = 1; i < 3; ++i) {
        BOOST_TEST(ts::eventually(
            [&] {
                return nodes[i].metric("imagegate_fleet_purge_events_received_total") > before[i];
            },
            100ms));
    }
    BOOST_TEST((std::chrono::steady_clock::now() - start < 300ms));
    // Gone from every L1 and from L2: the next request of each instance is a miss.
    for (auto& n : nodes) {
        BOOST_TEST(!contains(n.get(id).header("Cache-Status"), "imagegate; hit"));
    }
}

BOOST_AUTO_TEST_CASE(hostile_l2_values_are_refused_and_refetched) {
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    // A genuine value for `donor`, to tamper with.
    BOOST_TEST(nodes[0].get("donor-1").status == 200u);
    BOOST_REQUIRE(ts::eventually([&] {
        return contains(redis.command({"EXISTS", value_key("donor-1")}), ":1");
    }));
    const std::string donor = redis.command({"GET", value_key("donor-1")});
    const std::string genuine = donor.substr(donor.find('\n') + 1);
    struct variant {
        std::string name;
        std::string id;
        std::string value;
    };
    fleet::l2_record bad_json{.status = 200,
                              .kind = imagegate::cache::entry_kind::positive,
                              .stored_ms = now_ms,
                              .fresh_ms = 60000,
                              .swr_ms = 60000,
                              .sie_ms = 60000,
                              .account = ts::test_account,
                              .id = "hostile-json",
                              .body = R"({"success":true,"result":{"id":"hostile-json")"};
    std::string future = genuine;
    future[4] = 2;  // envelope version 2
    std::vector<variant> cases{
        {"wrong id", "hostile-wrong-id", genuine},  // donor-1's value under another key
        {"truncated", "donor-1", genuine.substr(0, genuine.size() - 10)},
        {"future version", "donor-1", future},
        {"bad json", "hostile-json", fleet::encode(bad_json)},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            BOOST_TEST(nodes[1].purge(c.id).status == 200u);  // L1s and L2 clean
            BOOST_TEST(
                contains(redis.command({"SET", value_key(c.id), c.value, "PX", "60000"}), "+OK"));
            const auto before = up.emu->requests_for(c.id);
            const double refused = nodes[2].metric("imagegate_fleet_l2_refused_invalid_total");
            const auto r = nodes[2].get(c.id);
            BOOST_TEST(r.status == 200u);
            BOOST_TEST(!contains(r.header("Cache-Status"), "l2-hit"), r.header("Cache-Status"));
            BOOST_TEST(contains(r.body, "\"id\":\"" + c.id + "\""), r.body);
            BOOST_TEST(up.emu->requests_for(c.id) == before + 1);
            BOOST_TEST(nodes[2].metric("imagegate_fleet_l2_refused_invalid_total") == refused + 1);
        }
    }
}

BOOST_AUTO_TEST_CASE(redis_killed_then_restarted) {
    const std::string hot = "kill-hot-1";
    BOOST_TEST(nodes[0].get(hot).status == 200u);
    BOOST_TEST(contains(nodes[0].get(hot).header("Cache-Status"), "imagegate; hit"));
    redis.kill();
    for (auto& n : nodes) {
        BOOST_TEST(ts::eventually([&] { return contains(n.readyz().body, "degraded"); }, 3s));
        BOOST_TEST(n.readyz().status == 200u);
    }
    // L1 keeps serving; cold keys go upstream; no client error.
    for (int i = 0; i < 20; ++i) {
        BOOST_TEST(contains(nodes[0].get(hot).header("Cache-Status"), "imagegate; hit"));
        const auto cold = nodes[i % 3].get("kill-cold-" + std::to_string(i));
        BOOST_TEST(cold.status == 200u);
    }
    // A purge cannot be broadcast: 503, and it says so.
    const auto p = nodes[1].purge(hot);
    BOOST_TEST(p.status == 503u);
    BOOST_TEST(contains(p.body, "not broadcast"));
    const double flushes = nodes[0].metric("imagegate_fleet_l1_flushes_total");
    redis.restart();
    for (auto& n : nodes) {
        BOOST_TEST(
            ts::eventually([&] { return contains(n.readyz().body, "\"fleet\":\"ok\""); }, 10s));
    }
    BOOST_TEST(nodes[0].metric("imagegate_fleet_l1_flushes_total") > flushes);
    // L1 was flushed on resubscription: the hot key is fetched again (Redis restarted empty).
    BOOST_TEST(!contains(nodes[0].get(hot).header("Cache-Status"), "imagegate; hit"));
}

BOOST_AUTO_TEST_CASE(redis_paused_costs_at_most_op_timeout) {
    const std::string hot = "pause-hot-1";
    BOOST_TEST(nodes[0].get(hot).status == 200u);
    redis.pause();
    for (int i = 0; i < 6; ++i) {
        const auto start = std::chrono::steady_clock::now();
        const auto r = nodes[0].get("pause-cold-" + std::to_string(i));
        const auto took = std::chrono::steady_clock::now() - start;
        BOOST_TEST(r.status == 200u);
        // op_timeout (100 ms) for the L2 GET, then the normal path (loopback emulator).
        BOOST_TEST((took < 600ms),
                   "took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                           << " ms");
        BOOST_TEST(contains(nodes[0].get(hot).header("Cache-Status"), "imagegate; hit"));
    }
    redis.resume();
    BOOST_TEST(
        ts::eventually([&] { return contains(nodes[0].readyz().body, "\"fleet\":\"ok\""); }, 10s));
}

BOOST_AUTO_TEST_SUITE_END()

// The fleet budget through the real processes (gateway/fleet/budget_gate.hpp; the gate alone
// has fleet_budget_test): 30 calls per 10 s with a burst of 5 for the whole fleet.
struct budget_fixture : fleet_fixture {
    budget_fixture()
        : fleet_fixture(
              "budget = 30\nwindow = \"10s\"\nburst = 5\nmax_queue_wait = \"1s\"\n"
              "coalesce_timeout = \"10s\"\n") {}
};

BOOST_FIXTURE_TEST_CASE(a_flood_over_three_instances_stays_in_the_fleet_budget, budget_fixture) {
    up.emu->reset_counters();
    // 3 clients per instance, each asking for new ids back to back for 3 s.
    const auto until = std::chrono::steady_clock::now() + 3s;
    std::atomic<int> ok{0};
    std::atomic<int> refused{0};
    std::atomic<int> other{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < 9; ++c) {
        clients.emplace_back([&, c] {
            for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
                const auto r =
                    nodes[c % 3].get("flood-" + std::to_string(c) + "-" + std::to_string(i));
                if (r.status == 200u) {
                    ++ok;
                } else if (r.status == 429u && std::stoi(r.header("Retry-After")) >= 1 &&
                           !r.header("retry-after-ms").empty()) {
                    ++refused;
                } else {
                    ++other;
                }
            }
        });
    }
    for (auto& t : clients) {
        t.join();
    }
    BOOST_TEST(other.load() == 0);
    BOOST_TEST(refused.load() > 0);
    BOOST_TEST(ok.load() >= 5);
    // Every window of the emulator's call log: at most burst + rate x length calls (+1 for a
    // grant in flight at the window's edge).
    const auto calls = up.emu->calls();
    BOOST_TEST(calls.size() == static_cast<std::size_t>(ok.load()));
    std::size_t worst_excess = 0;
    for (std::size_t b = 0, e = 0; b < calls.size(); ++b) {
        for (e = b; e < calls.size() && calls[e].at - calls[b].at <= 3s; ++e) {
        }
        const auto length = std::chrono::duration<double>(calls[e - 1].at - calls[b].at).count();
        const double bound = 5 + 3.0 * length + 1;
        if (static_cast<double>(e - b) > bound) {
            worst_excess = std::max(worst_excess, e - b);
        }
    }
    BOOST_TEST(worst_excess == 0u);
    BOOST_TEST(nodes[0].metric("imagegate_fleet_budget_on_fallback") == 0);
}

BOOST_FIXTURE_TEST_CASE(an_upstream_429_seen_by_one_instance_stops_all_three, budget_fixture) {
    ts::fault_rule f;
    f.kind = ts::fault_kind::rate_limited;
    f.image_id = "trip-1";
    f.retry_after = 30;
    f.times = 1;
    up.emu->add_fault(f);
    const auto r = nodes[0].get("trip-1");
    BOOST_TEST(r.status == 429u);
    const auto before = up.emu->snapshot().requests;
    for (std::size_t i = 1; i < 3; ++i) {
        const auto other = nodes[i].get("after-trip-" + std::to_string(i));
        BOOST_TEST(other.status == 429u);
        BOOST_TEST(contains(other.body, R"("code":99429)"), other.body);
        BOOST_TEST(std::stoi(other.header("Retry-After")) > 20);
    }
    BOOST_TEST(up.emu->snapshot().requests == before);  // nobody called upstream
}
