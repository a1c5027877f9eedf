// auth.mode = "passthrough" through real sockets: each caller's own credential goes upstream
// (never the gateway's token), a cached entry of an account is answered only to credentials
// the upstream accepted for that account, flights and the shield are per credential, and no
// credential reaches the log, the metrics or an answer.
#define BOOST_TEST_MODULE passthrough_test
#include "gateway/auth/authorizer.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/herd.hpp"

#include <spdlog/sinks/ostream_sink.h>

#include <cstdio>
#include <mutex>
#include <sstream>

namespace ts = imagegate::testing;
using ts::contains;
using verb = boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

const std::string other_account = "11111111111111111111111111111111";

// Credentials the emulator knows: `good` and the key pair read test_account, `foreign`
// reads only other_account, `second` reads test_account too. `unknown` it has never seen.
const std::string good = "good-token-0123456789";
const std::string second = "second-token-abcdef";
const std::string foreign = "foreign-token-987654";
const std::string unknown = "unknown-token-55555";
const std::string key_email = "owner@example.com";
const std::string key_secret = "0123456789abcdef0123456789abcdef01234";

ts::emulator_options passthrough_upstream(bool any_image = true) {
    ts::emulator_options o;
    o.any_image_exists = any_image;
    o.accounts = {ts::test_account, other_account};
    o.credentials = {
        {.token = good, .email = {}, .key = {}, .accounts = {ts::test_account}},
        {.token = second, .email = {}, .key = {}, .accounts = {ts::test_account}},
        {.token = foreign, .email = {}, .key = {}, .accounts = {other_account}},
        {.token = {}, .email = key_email, .key = key_secret, .accounts = {ts::test_account}}};
    o.unknown_credential_status = 401;
    return o;
}

ts::header_list bearer(const std::string& t) { return {{"Authorization", "Bearer " + t}}; }
ts::header_list key_pair() { return {{"X-Auth-Email", key_email}, {"X-Auth-Key", key_secret}}; }

/// A std::ostream sink's text, readable while the gateway writes to it.
struct captured_log {
    std::ostringstream text;
    std::shared_ptr<spdlog::logger> logger;
    captured_log() {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text, true);
        logger = std::make_shared<spdlog::logger>("passthrough", sink);
        logger->set_level(spdlog::level::trace);
    }
    std::string str() {
        logger->flush();
        return text.str();
    }
};

/// Like ts::gateway_runner, with the gateway's log captured.
class logged_gateway {
public:
    logged_gateway(imagegate::config::settings s, std::shared_ptr<spdlog::logger> log)
        : app_(std::move(s), std::move(log)) {
        app_.start();
    }
    ts::response get(const std::string& target, ts::header_list h = {}) const {
        ts::endpoint e;
        e.port = app_.data_port();
        e.tls = false;
        return ts::request(e, verb::get, target, std::move(h));
    }
    std::string metrics() const {
        ts::endpoint e;
        e.port = app_.admin_port();
        e.tls = false;
        return ts::request(e, verb::get, "/metrics").body;
    }
    std::uint16_t port() const { return app_.data_port(); }

private:
    imagegate::gateway::app app_;
};

struct fixture : ts::emulated_upstream {
    explicit fixture(bool any_image = true)
        : ts::emulated_upstream(passthrough_upstream(any_image)) {
        settings.auth.mode = "passthrough";
        // Configured, but passthrough must never send it.
        settings.secret.upstream_token = emu->token();
    }
};

struct strict_fixture : fixture {
    strict_fixture() : fixture(false) {}
};

std::string path(std::string_view id, std::string_view account = ts::test_account) {
    return ts::gateway_runner::image_path(id, account);
}

bool is_hit(const ts::response& r) { return contains(r.header("Cache-Status"), "; hit"); }

}  // namespace

BOOST_FIXTURE_TEST_CASE(no_or_malformed_credential_is_refused_without_an_upstream_call, fixture) {
    ts::gateway_runner gw(settings);
    auto r = gw.get(path("refused"));
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(contains(r.body, R"("code":99410)"));
    BOOST_TEST(contains(r.header("WWW-Authenticate"), "Bearer"));
    const std::string ctl(1, '\x01');
    const std::vector<ts::header_list> malformed = {
        {{"Authorization", "Bearer " + good}, {"Authorization", "Bearer " + good}},
        {{"Authorization", "Basic Zm9vOmJhcg=="}},
        {{"Authorization", "Bearer a b"}},
        {{"X-Auth-Email", key_email}},
        {{"X-Auth-Key", key_secret}},
        {{"X-Auth-Email", key_email}, {"X-Auth-Key", "a" + ctl}},
        {{"Authorization", "Bearer " + good},
         {"X-Auth-Email", key_email},
         {"X-Auth-Key", key_secret}},
    };
    for (std::size_t i = 0; i < malformed.size(); ++i) {
        r = gw.get(path("refused"), malformed[i]);
        BOOST_TEST(r.status == 400u, "case " << i);
        BOOST_TEST(contains(r.body, R"("code":99400)"), "case " << i);
    }
    BOOST_TEST(emu->requests_for("refused") == 0u);
}

BOOST_FIXTURE_TEST_CASE(the_callers_credential_goes_upstream_never_the_gateway_token, fixture) {
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(path("fwd-1"), bearer(good)).status == 200u);
    BOOST_TEST(gw.get(path("fwd-2"), key_pair()).status == 200u);
    BOOST_TEST(emu->requests_with(good) == 1u);
    BOOST_TEST(emu->requests_with(key_secret) == 1u);
    BOOST_TEST(emu->requests_with(emu->token()) == 0u);
    // Unknown to the upstream: its 401 is passed through and nothing is stored.
    for (int i = 0; i < 2; ++i) {
        const auto r = gw.get(path("fwd-3"), bearer(unknown));
        BOOST_TEST(r.status == 401u);
        BOOST_TEST(contains(r.body, R"("code":10000)"));
        BOOST_TEST(!contains(r.header("Cache-Status"), "stored"));
    }
    BOOST_TEST(emu->requests_with(unknown) == 2u);
    BOOST_TEST(emu->requests_with(emu->token()) == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_cached_entry_is_answered_only_to_a_proven_credential, fixture) {
    ts::gateway_runner gw(settings);
    auto r = gw.get(path("img-1"), bearer(good));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.header("Cache-Status"), "stored"));
    BOOST_TEST(is_hit(gw.get(path("img-1"), bearer(good))));
    BOOST_TEST(emu->requests_for("img-1") == 1u);
    // A credential of another account: the upstream's 403, never the cached body.
    r = gw.get(path("img-1"), bearer(foreign));
    BOOST_TEST(r.status == 403u);
    BOOST_TEST(contains(r.body, R"("code":10000)"));
    BOOST_TEST(!contains(r.body, "img-1"));
    BOOST_TEST(!is_hit(r));
    // Unknown credential: 401, never the body.
    r = gw.get(path("img-1"), bearer(unknown));
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(!contains(r.body, "img-1"));
    BOOST_TEST(emu->requests_for("img-1") == 3u);
    // A valid credential of the same account without a proof yet goes upstream once; its
    // proof then covers every cached entry of the account.
    BOOST_TEST(gw.get(path("img-2"), bearer(good)).status == 200u);
    r = gw.get(path("img-1"), bearer(second));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(!is_hit(r));
    BOOST_TEST(emu->requests_for("img-1") == 4u);
    BOOST_TEST(is_hit(gw.get(path("img-2"), bearer(second))));
    BOOST_TEST(emu->requests_for("img-2") == 1u);
    // The email + key pair is a credential of its own.
    BOOST_TEST(!is_hit(gw.get(path("img-2"), key_pair())));
    BOOST_TEST(is_hit(gw.get(path("img-1"), key_pair())));
    const ts::gateway_runner& cgw = gw;
    BOOST_TEST(contains(ts::request(cgw.admin(), verb::get, "/metrics").body,
                        "imagegate_passthrough_proofs_total{result=\"rejected\"} 2"));
}

BOOST_FIXTURE_TEST_CASE(negative_entries_need_a_proof_too, strict_fixture) {
    ts::gateway_runner gw(settings);
    auto r = gw.get(path("no-such-image"), bearer(good));
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(contains(r.body, R"("code":5404)"));
    BOOST_TEST(is_hit(gw.get(path("no-such-image"), bearer(good))));
    // 5404 proved `good` for the account: a seeded image read by another credential is
    // then a hit for `good`.
    const auto id = emu->image_ids(ts::test_account).front();
    BOOST_TEST(gw.get(path(id), bearer(second)).status == 200u);
    BOOST_TEST(is_hit(gw.get(path(id), bearer(good))));
    // Other credentials learn nothing from the negative entry.
    BOOST_TEST(gw.get(path("no-such-image"), bearer(foreign)).status == 403u);
    BOOST_TEST(gw.get(path("no-such-image"), bearer(unknown)).status == 401u);
}

BOOST_FIXTURE_TEST_CASE(an_upstream_rejection_drops_the_proof, fixture) {
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(path("kept"), bearer(good)).status == 200u);
    BOOST_TEST(is_hit(gw.get(path("kept"), bearer(good))));
    // The upstream now refuses `good` (a revoked token): 403 for this account...
    ts::fault_rule f;
    f.kind = ts::fault_kind::status;
    f.status = 403;
    f.image_id = "revoked";
    f.times = 1;
    emu->add_fault(f);
    const auto r = gw.get(path("revoked"), bearer(good));
    BOOST_TEST(r.status == 403u);
    BOOST_TEST(contains(r.body, R"("code":10000)"), r.body);
    // ...so the cached entry is no longer answered from the proof: it is asked again.
    const auto before = emu->requests_for("kept");
    BOOST_TEST(!is_hit(gw.get(path("kept"), bearer(good))));
    BOOST_TEST(emu->requests_for("kept") == before + 1);
    BOOST_TEST(is_hit(gw.get(path("kept"), bearer(good))));
}

BOOST_FIXTURE_TEST_CASE(herd_of_mixed_credentials_never_crosses, fixture) {
    ts::gateway_runner gw(settings);
    ts::fault_rule f;
    f.kind = ts::fault_kind::delay;
    f.delay = 200ms;
    // 50 concurrent requests for one cold id: half with a credential the upstream accepts for
    // the account, half with one it refuses for it (403); then the same with unknown ones.
    for (const auto& [bad, bad_status] : {std::pair{foreign, 403u}, std::pair{unknown, 401u}}) {
        const std::string id = bad == foreign ? "herded" : "herded-2";
        f.image_id = id;
        emu->add_fault(f);
        std::vector<std::string> targets(50, path(id));
        std::vector<std::string> headers;
        for (int i = 0; i < 50; ++i) {
            headers.push_back("Authorization: Bearer " + (i % 2 == 0 ? good : bad) + "\r\n");
        }
        const auto results = ts::run_herd(gw.app().data_port(), targets, 0, 20s, headers);
        for (int i = 0; i < 50; ++i) {
            const auto& res = results[static_cast<std::size_t>(i)];
            BOOST_TEST(res.status == (i % 2 == 0 ? 200u : bad_status), id << " request " << i);
            if (i % 2 != 0) {
                BOOST_TEST(!contains(res.cache_status, "hit"));
                BOOST_TEST(!contains(res.cache_status, "stored"));
            }
        }
        // One flight per credential.
        BOOST_TEST(emu->requests_for(id) == 2u, id);
        // And with the entry now cached: the good ones hit, the bad ones still get refused.
        const auto warm = ts::run_herd(gw.app().data_port(), targets, 0, 20s, headers);
        for (int i = 0; i < 50; ++i) {
            const auto& res = warm[static_cast<std::size_t>(i)];
            BOOST_TEST(res.status == (i % 2 == 0 ? 200u : bad_status), id << " warm " << i);
            BOOST_TEST(contains(res.cache_status, "hit") == (i % 2 == 0), id << " warm " << i);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(stale_answers_need_a_proof, fixture) {
    settings.cache.ttl = 300ms;
    settings.cache.stale_while_revalidate = 1h;
    settings.cache.stale_if_error = 1h;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(path("stale"), bearer(good)).status == 200u);
    gw.app().time().advance(400ms);  // the clock, not a sleep
    // Past freshness, inside stale-while-revalidate: a refused credential gets the refusal.
    auto r = gw.get(path("stale"), bearer(foreign));
    BOOST_TEST(r.status == 403u);
    BOOST_TEST(!contains(r.header("Cache-Status"), "stale"));
    // The proven one gets the stale entry, and the refresh goes out with its credential.
    const auto sent = emu->requests_with(good);
    r = gw.get(path("stale"), bearer(good));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.header("Cache-Status"), "stale-while-revalidate"));
    BOOST_TEST(ts::eventually([&] { return emu->requests_with(good) == sent + 1; }));
    BOOST_TEST(emu->requests_with(emu->token()) == 0u);
}

// stale-if-error: the upstream fails; only a proven credential gets the stale entry.
BOOST_FIXTURE_TEST_CASE(stale_if_error_for_a_proven_credential, fixture) {
    settings.cache.ttl = 300ms;
    settings.cache.stale_while_revalidate = 0ms;
    settings.cache.stale_if_error = 1h;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(path("sie"), bearer(good)).status == 200u);
    gw.app().time().advance(400ms);  // the clock, not a sleep
    ts::fault_rule f;
    f.kind = ts::fault_kind::status;
    f.status = 500;
    f.image_id = "sie";
    emu->add_fault(f);
    auto r = gw.get(path("sie"), bearer(good));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.header("Cache-Status"), "stale-if-error"));
    // `second` may read the account but has no proof yet: the stale entry is not its to see.
    r = gw.get(path("sie"), bearer(second));
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(!contains(r.header("Cache-Status"), "stale"));
    r = gw.get(path("sie"), bearer(foreign));
    BOOST_TEST(r.status == 502u);  // the emulator's fault answers before its auth check
    BOOST_TEST(!contains(r.header("Cache-Status"), "stale"));
}

BOOST_FIXTURE_TEST_CASE(the_budget_is_per_credential, fixture) {
    settings.shield.budget = 2;
    settings.shield.burst = 2;
    settings.upstream.request_timeout = 500ms;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(path("b-1"), bearer(good)).status == 200u);
    BOOST_TEST(gw.get(path("b-2"), bearer(good)).status == 200u);
    auto r = gw.get(path("b-3"), bearer(good));
    BOOST_TEST(r.status == 429u);
    BOOST_TEST(contains(r.body, R"("code":99430)"));
    // Another caller's quota is untouched.
    BOOST_TEST(gw.get(path("b-3"), bearer(second)).status == 200u);
    BOOST_TEST(gw.get(path("b-4"), key_pair()).status == 200u);
}

BOOST_FIXTURE_TEST_CASE(made_up_credentials_share_one_budget, fixture) {
    settings.shield.unproven_budget = 3;
    settings.upstream.request_timeout = 300ms;
    ts::gateway_runner gw(settings);
    // A credential's first call is unproven: it takes one of the 3 shared tokens.
    BOOST_TEST(gw.get(path("u-good"), bearer(good)).status == 200u);
    unsigned rejected = 0;
    unsigned refused = 0;
    for (int i = 0; i < 6; ++i) {
        const auto id = "u-" + std::to_string(i);
        const auto r = gw.get(path(id), bearer("made-up-credential-" + std::to_string(i)));
        if (r.status == 401u) {
            ++rejected;  // reached the upstream, which refused it
        } else if (r.status == 429u && contains(r.body, R"("code":99430)")) {
            ++refused;  // refused by the gateway: no upstream call
            BOOST_TEST(emu->requests_for(id) == 0u);
            BOOST_TEST(!r.header("Retry-After").empty());
        }
    }
    BOOST_TEST(rejected == 2u);
    BOOST_TEST(refused == 4u);
    // A credential the upstream accepted is not charged to the shared budget.
    BOOST_TEST(gw.get(path("u-good-2"), bearer(good)).status == 200u);
    BOOST_TEST(gw.get(path("u-good-3"), bearer(good)).status == 200u);
}

BOOST_FIXTURE_TEST_CASE(an_upstream_429_pauses_only_that_credential, fixture) {
    ts::gateway_runner gw(settings);
    ts::fault_rule f;
    f.kind = ts::fault_kind::rate_limited;
    f.image_id = "limited";
    f.retry_after = 60;
    f.times = 1;
    emu->add_fault(f);
    auto r = gw.get(path("limited"), bearer(good));
    BOOST_TEST(r.status == 429u);
    r = gw.get(path("after"), bearer(good));
    BOOST_TEST(r.status == 429u);
    BOOST_TEST(contains(r.body, R"("code":99429)"));
    BOOST_TEST(emu->requests_for("after") == 0u);
    BOOST_TEST(gw.get(path("after"), bearer(second)).status == 200u);
}

BOOST_FIXTURE_TEST_CASE(no_credential_reaches_the_log_metrics_or_answers, fixture) {
    settings.log.access_log = true;
    settings.log.level = "trace";
    captured_log log;
    std::vector<std::string> answers;
    std::string metrics;
    {
        logged_gateway gw(settings, log.logger);
        const auto keep = [&](const ts::response& r) {
            std::string all = r.body;
            for (const auto& [n, v] : r.headers) {
                all += n + ": " + v + "\n";
            }
            answers.push_back(all);
        };
        keep(gw.get(path("log-1"), bearer(good)));
        keep(gw.get(path("log-1"), bearer(good)));
        keep(gw.get(path("log-1"), bearer(foreign)));
        keep(gw.get(path("log-1"), bearer(unknown)));
        keep(gw.get(path("log-1"), key_pair()));
        keep(gw.get(path("log-1"), {{"Authorization", "Bearer " + good + " x"}}));
        keep(gw.get(path("log-1"), {{"X-Auth-Email", key_email}}));
        ts::fault_rule f;
        f.kind = ts::fault_kind::status;
        f.status = 503;
        f.image_id = "log-2";
        emu->add_fault(f);
        keep(gw.get(path("log-2"), bearer(second)));
        f.kind = ts::fault_kind::rate_limited;
        f.image_id = "log-3";
        emu->add_fault(f);
        keep(gw.get(path("log-3"), bearer(second)));
        metrics = gw.metrics();
    }
    const std::string text = log.str();
    BOOST_TEST(contains(text, "log-1"));  // the log was captured
    BOOST_TEST(contains(metrics, "imagegate_passthrough_proofs_total"));
    const auto hex_prefix = [](const std::string& material) {
        char buf[3];
        std::string out;
        for (const auto b : imagegate::gateway::sha256(material)) {
            std::snprintf(buf, sizeof buf, "%02x", b);
            out += buf;
        }
        return out.substr(0, 8);
    };
    std::vector<std::string> secrets = {good,       second,       foreign, unknown,
                                        key_secret, emu->token(), "Bearer"};
    for (const auto& t : {good, second, foreign, unknown}) {
        secrets.push_back(hex_prefix("bearer\n" + t));
        secrets.push_back(hex_prefix(t));
    }
    secrets.push_back(hex_prefix("key\n" + key_email + "\n" + key_secret));
    for (const auto& s : secrets) {
        BOOST_TEST(!contains(text, s), "log contains " << s);
        BOOST_TEST(!contains(metrics, s), "metrics contain " << s);
        for (const auto& a : answers) {
            BOOST_TEST(!contains(a, s), "answer contains " << s);
        }
    }
    BOOST_TEST(!contains(text, key_email));
}
