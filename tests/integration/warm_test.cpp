// Warming end to end: POST /cache/warm pages the emulator's v2 listing at background priority
// through the gate and stores every listed image as its detail entry; then every image is a
// hit with the bytes a detail fetch gives. Budget, foreground reserve, a 429 mid-run, a
// cancelled-then-resumed job, and the real binary killed or stopped mid-run and started again
// on its state file, resuming where it stopped.
#define BOOST_TEST_MODULE warm_test
#include "tests/integration/gateway_fixture.hpp"
#include "tests/integration/gateway_process.hpp"
#include "gateway/image/route.hpp"
#include "gateway/warm/cli.hpp"
#include "gateway/warm/state_file.hpp"

#include <boost/beast/http/verb.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

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

/// The real imagegate binary in front of the emulator, with `[warm] state_file` in the test's
/// directory; started and stopped by the test, by PID.
struct binary_fixture : fixture {
    binary_fixture() : fixture(2000) {
        const auto token_file = (up.dir.path() / "admin.token").string();
        ts::write_file(token_file, admin_token + "\n");
        std::filesystem::permissions(
            token_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        config = (up.dir.path() / "gw.toml").string();
        ts::write_file(config,
                       "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = "
                       "\"127.0.0.1:0\"\nthreads = 2\ndrain_timeout = \"2s\"\n"
                       "[upstream]\nurl = \"" +
                           up.settings.upstream.url + "\"\nca_file = \"" +
                           up.settings.upstream.ca_file +
                           "\"\n[log]\naccess_log = false\n[admin]\ntoken_file = \"" + token_file +
                           "\"\n[warm]\nstate_file = \"" + state_file() + "\"\n");
    }
    std::string state_file() const { return (up.dir.path() / "warm.state").string(); }
    ts::gateway_process start(int run) {
        return ts::start_gateway_process(
            IMAGEGATE_BIN, config,
            {"PATH=/usr/bin:/bin", "CLOUDFLARE_API_TOKEN=" + up.settings.secret.upstream_token},
            up.dir.path() / ("gw" + std::to_string(run) + ".out"));
    }
    ts::response admin(const ts::gateway_process& gw, verb method, const std::string& target) {
        return ts::request(gw.admin, method, target, {{"Authorization", "Bearer " + admin_token}});
    }
    std::optional<warm::shown_job> job(const ts::gateway_process& gw) {
        return warm::find_job(admin(gw, verb::get, "/cache/warm").body, ts::test_account);
    }
    // The job as the state file has it (the file must hold exactly one, and nothing refused).
    warm::job_progress saved() const {
        std::ifstream in(state_file());
        std::stringstream ss;
        ss << in.rdbuf();
        const auto st = warm::parse_state(ss.str());
        BOOST_TEST(st.refusals.empty());
        BOOST_REQUIRE(st.jobs.size() == 1u);
        return st.jobs.front();
    }
    // Pages the emulator served, per continuation token: twenty pages of 100, each once but
    // for at most `twice` of them (the page in flight when the gateway stopped).
    void check_pages_once(std::size_t twice) {
        const auto pages = up.emu->snapshot().by_listing_token;
        BOOST_TEST(pages.size() == 20u);
        BOOST_TEST(pages.count("") == 1u);  // the first page
        std::size_t again = 0;
        for (const auto& [token, n] : pages) {
            BOOST_TEST_CONTEXT(token) { BOOST_TEST(n <= 2u); }
            again += n - 1;
        }
        BOOST_TEST(again <= twice);
    }

    std::string config;
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

// SIGKILL mid-run: nothing is flushed, the state file holds the last stored page. The new
// process lists the job as interrupted at that position, waits for a POST (nothing resumes
// by itself), and resumes there: no page is fetched twice but the one in flight.
BOOST_FIXTURE_TEST_CASE(a_killed_gateway_resumes_from_the_saved_position, binary_fixture) {
    ts::fault_rule slow;  // every call takes 100 ms: the kill lands mid-run
    slow.kind = ts::fault_kind::delay;
    slow.delay = 100ms;
    up.emu->add_fault(slow);
    {
        auto gw = start(0);
        BOOST_TEST(admin(gw, verb::post, start_query(100)).status == 202u);
        BOOST_TEST_REQUIRE(ts::eventually([&] { return job(gw)->pages >= 5u; }, 20s));
        gw.proc->signal(SIGKILL);
        BOOST_TEST(gw.proc->wait_exit(5s) == 128 + SIGKILL);
    }
    const auto before = saved();
    BOOST_TEST(warm::to_string(before.state) == "running");  // as it was at the kill
    BOOST_TEST(before.pages >= 4u);
    BOOST_TEST(before.pages < 20u);
    BOOST_TEST(before.stored == before.pages * 100);
    BOOST_TEST(before.per_page == 100u);
    BOOST_TEST(!before.position.empty());
    up.emu->clear_faults();

    auto gw = start(1);
    const auto shown = admin(gw, verb::get, "/cache/warm").body;
    BOOST_TEST(contains(shown, R"("state":"interrupted")"), shown);
    BOOST_TEST(contains(shown, R"("position":")" + before.position + "\""), shown);
    // It waits for a POST: no call after the restart until then.
    const auto calls_before = up.emu->snapshot().requests;
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(up.emu->snapshot().requests == calls_before);
    // No per_page: the saved one (100) is kept.
    const auto resumed = admin(gw, verb::post, "/cache/warm?account=" + ts::test_account);
    BOOST_TEST(contains(resumed.body, R"("state":"resumed")"), resumed.body);
    BOOST_TEST_REQUIRE(ts::eventually(
        [&] {
            const auto j = job(gw);
            return j && (j->state == "done" || j->state == "failed");
        },
        30s));
    const auto j = *job(gw);
    BOOST_TEST(j.state == "done");
    BOOST_TEST(j.pages == 20u);
    BOOST_TEST(j.stored == 2000u);
    check_pages_once(1);
    BOOST_TEST(warm::to_string(saved().state) == "done");
    // After the restart L1 holds what the resumed run stored: its pages are hits.
    const auto ids = up.emu->image_ids(ts::test_account);
    const auto last =
        ts::request(gw.data, verb::get,
                    ts::gateway_runner::image_path(imagegate::gateway::percent_encode(ids.back())));
    BOOST_TEST(contains(last.header("Cache-Status"), "imagegate; hit"));
}

// SIGTERM mid-run: the gateway drains, the job ends as interrupted and the state file says
// so, with the position of the last stored page; started again, a POST resumes it.
BOOST_FIXTURE_TEST_CASE(a_stopped_gateway_keeps_the_job_as_interrupted, binary_fixture) {
    ts::fault_rule slow;
    slow.kind = ts::fault_kind::delay;
    slow.delay = 100ms;
    up.emu->add_fault(slow);
    std::uint64_t pages = 0;
    {
        auto gw = start(0);
        BOOST_TEST(admin(gw, verb::post, start_query(100)).status == 202u);
        BOOST_TEST_REQUIRE(ts::eventually([&] { return job(gw)->pages >= 3u; }, 20s));
        gw.proc->signal(SIGTERM);
        BOOST_TEST(gw.proc->wait_exit(10s) == 0);
    }
    const auto before = saved();
    BOOST_TEST(warm::to_string(before.state) == "interrupted");
    BOOST_TEST(before.pages >= 3u);
    BOOST_TEST(before.pages < 20u);
    BOOST_TEST(!before.position.empty());
    pages = before.pages;
    up.emu->clear_faults();
    auto gw = start(1);
    const auto j0 = job(gw);
    BOOST_TEST_REQUIRE(j0.has_value());
    BOOST_TEST(j0->state == "interrupted");
    BOOST_TEST(j0->pages == pages);
    // The command resumes it like a POST and follows it to the end.
    ::setenv("IMAGEGATE_ADMIN_TOKEN", admin_token.c_str(), 1);
    BOOST_TEST(warm::run_warm_command({"--account", ts::test_account, "--admin",
                                       "http://127.0.0.1:" + std::to_string(gw.admin.port)}) == 0);
    ::unsetenv("IMAGEGATE_ADMIN_TOKEN");
    const auto j = *job(gw);
    BOOST_TEST(j.state == "done");
    BOOST_TEST(j.pages == 20u);
    BOOST_TEST(j.stored == 2000u);
    check_pages_once(1);
}

// A hostile state file never stops the gateway: bad lines are refused with a log line, the
// good ones are listed; a file that is not a state file is refused whole.
BOOST_FIXTURE_TEST_CASE(a_hostile_state_file_is_refused_line_by_line, binary_fixture) {
    const std::string good = "job account=" + ts::test_account +
                             " state=running per_page=100 position=abc pages=2 stored=200 "
                             "invalid=0 refused=0 calls=3 total= l2_written=0 l2_failed=0\n";
    ts::write_file(state_file(), std::string(warm::state_header) + "\n" + good +
                                     "job account=../../etc state=done\n" +
                                     "job account=\x1b[31mred position=\x01\n" + good);
    {
        auto gw = start(0);
        const auto shown = admin(gw, verb::get, "/cache/warm").body;
        BOOST_TEST(contains(shown, R"("state":"interrupted")"), shown);
        BOOST_TEST(contains(shown, R"("position":"abc")"), shown);
        const auto log = gw.proc->output();
        BOOST_TEST(contains(log, "line 3 refused"), log);
        BOOST_TEST(contains(log, "line 4 refused"));
        BOOST_TEST(contains(log, "line 5 refused: a second job for the same account"));
        BOOST_TEST(!contains(log, "31mred"));  // no byte of the file reaches the log
        gw.proc->signal(SIGTERM);
        BOOST_TEST(gw.proc->wait_exit(10s) == 0);
    }
    ts::write_file(state_file(), std::string(4096, '\0'));
    auto gw = start(1);
    BOOST_TEST(contains(admin(gw, verb::get, "/cache/warm").body, R"("jobs":[])"));
    BOOST_TEST(contains(gw.proc->output(), "refused: not an imagegate warm state file"));
}
