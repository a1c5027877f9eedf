// Warming end to end: POST /cache/warm pages the emulator's v2 listing at background priority
// through the gate and stores every listed image as its detail entry; then every image is a
// hit with the bytes a detail fetch gives. Budget, foreground reserve, a 429 mid-run and a
// cancelled-then-resumed job.
#define BOOST_TEST_MODULE warm_test
#include "tests/integration/gateway_fixture.hpp"
#include "gateway/image/route.hpp"
#include "gateway/warm/cli.hpp"

#include <boost/beast/http/verb.hpp>

namespace ts = imagegate::testing;
namespace warm = imagegate::warm;
using ts::contains;
using verb = boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

const std::string admin_token = "admin-token-0123456789abcdef";

ts::emulator_options listing(std::size_t images) {
    ts::emulator_options o;
    o.image_count = images;
    o.rate_limit = 100000;
    return o;
}

struct fixture {
    explicit fixture(std::size_t images) : up(listing(images)) {
        up.settings.secret.admin_token = admin_token;
    }

    ts::response admin(ts::gateway_runner& gw, verb method, const std::string& target) {
        return ts::request(gw.admin(), method, target,
                           {{"Authorization", "Bearer " + admin_token}});
    }
    std::string start_query(std::size_t per_page) const {
        return "/cache/warm?account=" + ts::test_account + "&per_page=" + std::to_string(per_page);
    }
    std::optional<warm::shown_job> job(ts::gateway_runner& gw) {
        return warm::find_job(admin(gw, verb::get, "/cache/warm").body, ts::test_account);
    }
    // Waits until the job is in one of `states` (true) or `limit` passes.
    bool wait_for(ts::gateway_runner& gw, std::initializer_list<std::string_view> states,
                  std::chrono::milliseconds limit = 30s) {
        return ts::eventually(
            [&] {
                const auto j = job(gw);
                return j && std::find(states.begin(), states.end(), j->state) != states.end();
            },
            limit);
    }
    ts::response direct(const std::string& id) {
        ts::endpoint e;
        e.port = up.emu->port();
        e.ca_pem = up.emu->ca_pem();
        return ts::request(e, verb::get, ts::gateway_runner::image_path(id),
                           {{"Authorization", "Bearer " + up.emu->token()}});
    }

    ts::emulated_upstream up;
};

struct ten_thousand : fixture {
    ten_thousand() : fixture(10000) {}
};
struct two_thousand : fixture {
    two_thousand() : fixture(2000) {}
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(warms_ten_thousand_images_into_hits_with_detail_bytes, ten_thousand) {
    auto& emu = *up.emu;
    ts::gateway_runner gw(up.settings);
    const auto started = admin(gw, verb::post, start_query(1000));
    BOOST_TEST(started.status == 202u);
    BOOST_TEST(contains(started.body, R"("state":"started")"));
    // One job per account at a time.
    if (job(gw)->state != "done") {
        BOOST_TEST(admin(gw, verb::post, start_query(1000)).status == 409u);
    }
    BOOST_TEST_REQUIRE(wait_for(gw, {"done", "failed"}));
    const auto j = *job(gw);
    BOOST_TEST(j.state == "done");
    BOOST_TEST(j.stored == 10000u);
    BOOST_TEST(j.pages == 10u);
    BOOST_TEST(j.invalid == 0u);
    BOOST_TEST(j.total.value_or(0) == 10000u);
    // The account's count plus ten pages: well inside the budget (1000 per 5 minutes).
    BOOST_TEST(emu.snapshot().requests == 11u);
    BOOST_TEST(gw.metric("imagegate_warm_images_stored_total") == 10000);
    BOOST_TEST(gw.metric("imagegate_warm_pages_total") == 10);
    BOOST_TEST(gw.metric("imagegate_warm_jobs_running") == 0);

    // Every image is now a hit, with no upstream call.
    const auto ids = emu.image_ids(ts::test_account);
    BOOST_TEST_REQUIRE(ids.size() == 10000u);
    emu.reset_counters();
    ts::connection c(gw.data());
    std::size_t hits = 0;
    std::map<std::string, std::string> sample;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto r =
            c.request(verb::get, gw.image_path(imagegate::gateway::percent_encode(ids[i])));
        hits += r.status == 200 && contains(r.header("Cache-Status"), "imagegate; hit") ? 1 : 0;
        if (i % 997 == 0) {
            sample[ids[i]] = r.body;
        }
    }
    BOOST_TEST(hits == ids.size());
    BOOST_TEST(emu.snapshot().requests == 0u);
    // The same bytes the SDK would get from images.v1.get.
    for (const auto& [id, body] : sample) {
        BOOST_TEST_CONTEXT(id) { BOOST_TEST(body == direct(id).body); }
    }
}

// A tight budget: the job takes only what the foreground reserve leaves, is refused and
// waits the truthful time (never spins), and a foreground miss still gets its slot.
BOOST_FIXTURE_TEST_CASE(background_warming_leaves_the_foreground_reserve, two_thousand) {
    auto& emu = *up.emu;
    // 3 calls a second, burst 5 of which 1 is the foreground's: the job (21 calls) is held
    // back even when it runs slowly (sanitizers).
    up.settings.shield.burst = 5;
    up.settings.shield.budget = 180;
    up.settings.shield.window = std::chrono::minutes(1);
    ts::gateway_runner gw(up.settings);
    const auto t0 = std::chrono::steady_clock::now();
    BOOST_TEST(admin(gw, verb::post, start_query(100)).status == 202u);
    BOOST_TEST_REQUIRE(ts::eventually([&] { return job(gw)->refused > 0; }, 10s));
    // While the job is held back, a foreground miss goes upstream at once.
    const auto miss = gw.get(gw.image_path("not-listed-anywhere"));
    BOOST_TEST(miss.status == 404u);
    BOOST_TEST(contains(miss.header("Cache-Status"), "fwd-status=404"));
    BOOST_TEST_REQUIRE(wait_for(gw, {"done", "failed"}));
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    const auto j = *job(gw);
    BOOST_TEST(j.state == "done");
    BOOST_TEST(j.stored == 2000u);
    BOOST_TEST(j.pages == 20u);
    // 21 warm calls and the miss, inside burst + rate * elapsed.
    const auto calls = emu.snapshot().requests;
    BOOST_TEST(calls == 22u);
    const double allowed = 10 + 10 * std::chrono::duration<double>(elapsed).count();
    BOOST_TEST(static_cast<double>(calls) <= allowed);
    // Refusals waited: far fewer than a spinning loop would make.
    BOOST_TEST(j.refused < 100u);
    BOOST_TEST(gw.metric("imagegate_warm_refused_total") == static_cast<double>(j.refused));
}

// An upstream 429 on a page pauses the job (and every call of the token) for Retry-After,
// then it resumes from the same position to completion.
BOOST_FIXTURE_TEST_CASE(a_429_mid_run_pauses_then_resumes, two_thousand) {
    auto& emu = *up.emu;
    ts::fault_rule pass;  // the count and the first page go through
    pass.kind = ts::fault_kind::delay;
    pass.times = 2;
    emu.add_fault(pass);
    ts::fault_rule limited;
    limited.kind = ts::fault_kind::rate_limited;
    limited.retry_after = 1;
    limited.times = 1;
    emu.add_fault(limited);
    ts::gateway_runner gw(up.settings);
    BOOST_TEST(admin(gw, verb::post, start_query(500)).status == 202u);
    BOOST_TEST_REQUIRE(wait_for(gw, {"done", "failed"}));
    const auto j = *job(gw);
    BOOST_TEST(j.state == "done");
    BOOST_TEST(j.stored == 2000u);
    BOOST_TEST(j.pages == 4u);
    BOOST_TEST(contains(j.last_error, "429"));
    // The count, four pages and the one refused by the upstream: no page was skipped.
    BOOST_TEST(emu.snapshot().requests == 6u);
}

// Cancelled mid-run, started again: it goes on from its position with its counters, so the
// pages are fetched once each.
BOOST_FIXTURE_TEST_CASE(a_cancelled_job_resumes_from_its_position, two_thousand) {
    auto& emu = *up.emu;
    ts::fault_rule slow;
    slow.kind = ts::fault_kind::delay;
    slow.delay = 100ms;
    emu.add_fault(slow);
    ts::gateway_runner gw(up.settings);
    BOOST_TEST(admin(gw, verb::post, start_query(100)).status == 202u);
    BOOST_TEST_REQUIRE(ts::eventually([&] { return job(gw)->pages >= 3; }, 10s));
    const auto cancelled = admin(gw, verb::delete_, "/cache/warm?account=" + ts::test_account);
    BOOST_TEST(cancelled.status == 202u);
    BOOST_TEST_REQUIRE(wait_for(gw, {"cancelled"}, 10s));
    const auto stopped = *job(gw);
    BOOST_TEST(stopped.pages < 20u);
    BOOST_TEST(admin(gw, verb::delete_, "/cache/warm?account=" + ts::test_account).status == 404u);
    emu.clear_faults();
    const auto resumed = admin(gw, verb::post, start_query(100));
    BOOST_TEST(contains(resumed.body, R"("state":"resumed")"));
    BOOST_TEST_REQUIRE(wait_for(gw, {"done", "failed"}));
    const auto j = *job(gw);
    BOOST_TEST(j.state == "done");
    BOOST_TEST(j.pages == 20u);
    BOOST_TEST(j.stored == 2000u);
    // Twenty pages once each, plus the account's count at each start.
    BOOST_TEST(emu.snapshot().requests == 22u);
}

// The command drives the same routes: starts the job, follows it, exits 0 when it is done;
// a second run for a done job starts over and is done again; a bad token exits 1.
BOOST_FIXTURE_TEST_CASE(the_warm_command_follows_the_job_to_the_end, two_thousand) {
    ts::gateway_runner gw(up.settings);
    const std::vector<std::string> args = {
        "--account",  ts::test_account,
        "--admin",    "http://127.0.0.1:" + std::to_string(gw.admin().port),
        "--per-page", "500"};
    ::setenv("IMAGEGATE_ADMIN_TOKEN", admin_token.c_str(), 1);
    BOOST_TEST(warm::run_warm_command(args) == 0);
    const auto j = *job(gw);
    BOOST_TEST(j.state == "done");
    BOOST_TEST(j.stored == 2000u);
    ::setenv("IMAGEGATE_ADMIN_TOKEN", "not-the-admin-token", 1);
    BOOST_TEST(warm::run_warm_command(args) == 1);
    ::unsetenv("IMAGEGATE_ADMIN_TOKEN");
    BOOST_TEST(warm::run_warm_command(args) == 2);  // no token at all
}

BOOST_FIXTURE_TEST_CASE(the_routes_need_the_admin_token_and_checked_parameters, two_thousand) {
    ts::gateway_runner gw(up.settings);
    const auto anonymous = ts::request(gw.admin(), verb::get, "/cache/warm");
    BOOST_TEST(anonymous.status == 401u);
    const auto wrong = ts::request(gw.admin(), verb::post, start_query(100),
                                   {{"Authorization", "Bearer not-the-admin-token"}});
    BOOST_TEST(wrong.status == 401u);
    for (const std::string& q :
         std::vector<std::string>{"/cache/warm", "/cache/warm?account=ABC",
                                  "/cache/warm?account=" + ts::test_account + "&per_page=5",
                                  "/cache/warm?account=" + ts::test_account + "&resume_from=a%20b",
                                  "/cache/warm?account=" + ts::test_account + "&what=1"}) {
        BOOST_TEST_CONTEXT(q) { BOOST_TEST(admin(gw, verb::post, q).status == 400u); }
    }
    BOOST_TEST(admin(gw, verb::put, "/cache/warm").status == 405u);
    BOOST_TEST(up.emu->snapshot().requests == 0u);
    BOOST_TEST(contains(admin(gw, verb::get, "/cache/warm").body, R"("jobs":[])"));
}
