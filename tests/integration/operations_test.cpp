// Operating a running gateway: configuration reload through POST /config/reload (client keys,
// admin token, freshness windows, restart-only keys, bad files, the data listener's TLS
// certificate, the budget's sizes), reloads racing requests, X-Request-Id on every answer, and the
// sampled access log. The real composition root in front of the in-process emulator; the gateway
// reads its configuration from files as main() does.
#define BOOST_TEST_MODULE operations_test
#include "tests/integration/gateway_fixture.hpp"

#include "config/load.hpp"
#include "gateway/auth/authorizer.hpp"

#include <boost/beast/http/verb.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

namespace ts = imagegate::testing;
using ts::contains;
using verb = boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

const std::string admin_token = "operations-admin-token-0123";

std::string hex_sha256(std::string_view key) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (const auto b : imagegate::gateway::sha256(key)) {
        out += digits[b >> 4];
        out += digits[b & 0xf];
    }
    return out;
}

void write_secret(const std::filesystem::path& file, const std::string& text) {
    ts::write_file(file.string(), text);
    std::filesystem::permissions(
        file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

/// A keys file granting each key every account.
std::string keys_toml(std::initializer_list<std::string_view> keys) {
    std::string out;
    for (const auto k : keys) {
        out += "[[client_keys]]\nsha256 = \"" + hex_sha256(k) + "\"\naccounts = [\"*\"]\n";
    }
    return out;
}

/// A gateway whose configuration lives in files of `dir` (config.toml, keys.toml,
/// admin.token), loaded and reloaded through config::load as main() does.
class file_configured_gateway {
public:
    /// `server`: more keys of the [server] table; `extra`: tables after the base ones.
    explicit file_configured_gateway(ts::emulated_upstream& up, std::string server = {},
                                     std::string extra = {},
                                     std::shared_ptr<spdlog::logger> log = ts::quiet_logger())
        : dir_(up.dir.path()), token_(up.settings.secret.upstream_token) {
        write_secret(dir_ / "keys.toml", keys_toml({"key-a"}));
        write_secret(dir_ / "admin.token", admin_token + "\n");
        base_toml_ = "[upstream]\nurl = \"" + up.settings.upstream.url + "\"\nca_file = \"" +
                     up.settings.upstream.ca_file +
                     "\"\nconnect_timeout = \"2s\"\nrequest_timeout = \"3s\"\n"
                     "[auth]\nkeys_file = \"" +
                     (dir_ / "keys.toml").string() + "\"\n[admin]\ntoken_file = \"" +
                     (dir_ / "admin.token").string() + "\"\n";
        write_config(std::move(extra), std::move(server));
        auto loaded = load();
        BOOST_REQUIRE_MESSAGE(loaded.errors.empty(), first_error(loaded));
        app_ = std::make_unique<imagegate::gateway::app>(std::move(loaded.value), std::move(log));
        app_->set_config_source([this] { return load(); });
        app_->start();
    }

    /// Rewrites config.toml: the [server] table with `server` added, the base tables, then
    /// `extra`.
    void write_config(const std::string& extra, const std::string& server = {}) const {
        ts::write_file(
            (dir_ / "config.toml").string(),
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n"
            "drain_timeout = \"2s\"\n" +
                (server.find("threads") == std::string::npos ? "threads = 2\n" : std::string()) +
                server + base_toml_ + extra);
    }
    const std::filesystem::path& dir() const noexcept { return dir_; }
    imagegate::gateway::app& app() noexcept { return *app_; }

    ts::endpoint data() const {
        ts::endpoint e;
        e.port = app_->data_port();
        e.tls = false;
        return e;
    }
    ts::endpoint admin() const {
        ts::endpoint e;
        e.port = app_->admin_port();
        e.tls = false;
        return e;
    }
    ts::response get(const std::string& id, const std::string& key) const {
        return ts::request(data(), verb::get, ts::gateway_runner::image_path(id),
                           {{"Authorization", "Bearer " + key}});
    }
    ts::response reload() const {
        return ts::request(admin(), verb::post, "/config/reload",
                           {{"Authorization", "Bearer " + admin_token}});
    }
    std::string metrics() const { return ts::request(admin(), verb::get, "/metrics").body; }

private:
    imagegate::config::load_result load() const {
        const std::vector<std::string> args{"--config", (dir_ / "config.toml").string()};
        const std::string token = token_;
        return imagegate::config::load(args, [token](std::string_view name) {
            return name == "CLOUDFLARE_API_TOKEN" ? std::optional<std::string>(token)
                                                  : std::nullopt;
        });
    }
    static std::string first_error(const imagegate::config::load_result& r) {
        return r.errors.empty() ? std::string() : r.errors[0].key + ": " + r.errors[0].reason;
    }

    std::filesystem::path dir_;
    std::string token_;
    std::string base_toml_;
    std::unique_ptr<imagegate::gateway::app> app_;
};

}  // namespace

BOOST_AUTO_TEST_CASE(reload_revokes_and_adds_client_keys_without_dropping_the_cache) {
    ts::emulated_upstream up;
    file_configured_gateway gw(up);
    BOOST_TEST(gw.get("ops-1", "key-a").status == 200u);
    BOOST_TEST(gw.get("ops-1", "key-b").status == 401u);
    const auto calls = up.emu->snapshot().requests;

    write_secret(gw.dir() / "keys.toml", keys_toml({"key-b"}));
    const auto r = gw.reload();
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(contains(r.body, R"("applied":["auth.client_keys"])"), r.body);
    BOOST_TEST(r.header("X-Request-Id").size() > 0u);

    // The next request already sees the new table; the cache is the same one.
    BOOST_TEST(gw.get("ops-1", "key-a").status == 401u);
    const auto b = gw.get("ops-1", "key-b");
    BOOST_TEST(b.status == 200u);
    BOOST_TEST(contains(b.header("Cache-Status"), "hit"), b.header("Cache-Status"));
    BOOST_TEST(up.emu->snapshot().requests == calls);
    BOOST_TEST(contains(gw.metrics(), "imagegate_config_reloads_total{result=\"ok\"} 1\n"));
}

BOOST_AUTO_TEST_CASE(a_bad_file_changes_nothing_and_says_why) {
    ts::emulated_upstream up;
    file_configured_gateway gw(up);
    BOOST_TEST(gw.get("ops-2", "key-a").status == 200u);

    // Bad TOML: the file, line and column are in the answer.
    gw.write_config("[cache]\nttl = 5s\n");
    auto r = gw.reload();
    BOOST_TEST(r.status == 400u);
    BOOST_TEST(contains(r.body, R"("success":false)"));
    BOOST_TEST(contains(r.body, "config.toml:"), r.body);

    // A keys file others may read, and a key file that replaces key-a: refused whole.
    gw.write_config("");
    write_secret(gw.dir() / "keys.toml", keys_toml({"key-b"}));
    std::filesystem::permissions(gw.dir() / "keys.toml", std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
    r = gw.reload();
    BOOST_TEST(r.status == 400u);
    BOOST_TEST(contains(r.body, "auth.keys_file"), r.body);
    BOOST_TEST(contains(r.body, "chmod 600"), r.body);

    // Nothing changed: key-a still reads, key-b still does not.
    BOOST_TEST(gw.get("ops-2", "key-a").status == 200u);
    BOOST_TEST(gw.get("ops-2", "key-b").status == 401u);
    const auto m = gw.metrics();
    BOOST_TEST(contains(m, "imagegate_config_reloads_total{result=\"error\"} 2\n"), m);
    BOOST_TEST(contains(m, "imagegate_config_reloads_total{result=\"ok\"} 0\n"), m);

    // Without the admin token the route refuses and reloads nothing.
    BOOST_TEST(ts::request(gw.admin(), verb::post, "/config/reload").status == 401u);
    BOOST_TEST(ts::request(gw.admin(), verb::get, "/config/reload",
                           {{"Authorization", "Bearer " + admin_token}})
                   .status == 405u);
}

BOOST_AUTO_TEST_CASE(restart_only_changes_are_reported_and_the_rest_applies) {
    ts::emulated_upstream up;
    file_configured_gateway gw(up);
    const auto before = gw.get("ops-3a", "key-a");
    BOOST_TEST(contains(before.header("Cache-Status"), "ttl=300"), before.header("Cache-Status"));

    gw.write_config("[cache]\nttl = \"7s\"\nmax_bytes = \"64MiB\"\n", "threads = 3\n");
    const auto r = gw.reload();
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(contains(r.body, R"("applied":["cache.ttl"])"), r.body);
    BOOST_TEST(contains(r.body, R"("restart_required":["server.threads","cache.max_bytes"])"),
               r.body);

    // New answers are stored with the new ttl; the cache's size is the old one.
    const auto after = gw.get("ops-3b", "key-a");
    const auto cs = after.header("Cache-Status");
    BOOST_TEST((contains(cs, "ttl=7") || contains(cs, "ttl=6")), cs);
    const auto m = gw.metrics();
    BOOST_TEST(contains(m, "imagegate_cache_max_bytes 268435456\n"), m);
}

BOOST_AUTO_TEST_CASE(reload_resizes_the_budget_keeping_what_was_spent) {
    ts::emulated_upstream up;
    file_configured_gateway gw(up);
    // Three misses spend three of the default budget's tokens (300 ms each).
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST_REQUIRE(gw.get("ops-5-" + std::to_string(i), "key-a").status == 200u);
    }
    // Two calls an hour, one at a time: at 30 min per call, what was spent (up to 900 ms
    // ahead: 1 call) stands for at least 30 min, far beyond max_queue_wait.
    gw.write_config("[shield]\nbudget = 2\nwindow = \"1h\"\nburst = 1\n");
    auto r = gw.reload();
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(contains(r.body, R"("applied":["shield.budget","shield.window","shield.burst"])"),
               r.body);
    BOOST_TEST(contains(gw.metrics(), "imagegate_shield_budget 2\n"));
    // Refused at once with the truthful wait: the next slot is 30 to 90 min away. (On a
    // machine so slow that the bucket refilled before the reload, the new burst of 1 goes
    // first.)
    ts::response refused;
    for (int i = 0; i < 2 && refused.status != 429u; ++i) {
        refused = gw.get("ops-5-x" + std::to_string(i), "key-a");
    }
    BOOST_TEST_REQUIRE(refused.status == 429u, refused.body);
    const int retry = std::stoi(refused.header("Retry-After"));
    BOOST_TEST(retry > 1700);
    BOOST_TEST(retry <= 5400);
    // Cached answers never needed the budget.
    BOOST_TEST(gw.get("ops-5-0", "key-a").status == 200u);

    // Back to the defaults: the calls spent at 30 min are a few at 300 ms, within the burst.
    gw.write_config("");
    r = gw.reload();
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(contains(gw.metrics(), "imagegate_shield_budget 1000\n"));
    for (int i = 0; i < 5; ++i) {
        const auto ok = gw.get("ops-5-y" + std::to_string(i), "key-a");
        BOOST_TEST(ok.status == 200u, ok.body);
    }
}

BOOST_AUTO_TEST_CASE(reloads_race_requests) {
    ts::emulated_upstream up;
    file_configured_gateway gw(up);
    BOOST_TEST(gw.get("ops-4", "key-a").status == 200u);
    std::atomic<bool> stop{false};
    std::atomic<int> unexpected{0};
    std::thread client([&] {
        ts::connection c(gw.data());
        while (!stop.load()) {
            const auto r = c.request(verb::get, ts::gateway_runner::image_path("ops-4"),
                                     {{"Authorization", "Bearer key-a"}});
            // key-a is in every other table: either verdict, never anything else.
            if (r.status != 200u && r.status != 401u) {
                unexpected.fetch_add(1);
            }
        }
    });
    for (int i = 0; i < 20; ++i) {
        write_secret(gw.dir() / "keys.toml",
                     i % 2 == 0 ? keys_toml({"key-b"}) : keys_toml({"key-a", "key-b"}));
        gw.write_config(i % 2 == 0 ? "[log]\nlevel = \"warn\"\n" : "");
        BOOST_TEST(gw.reload().status == 200u);
    }
    stop.store(true);
    client.join();
    BOOST_TEST(unexpected.load() == 0);
}

namespace {

/// The data listener's certificate and key in `dir` (key mode 600), overwritten in place.
void write_listener_pair(const std::filesystem::path& dir, const ts::pki& pki) {
    ts::write_file((dir / "listener.pem").string(), pki.server_cert_pem);
    write_secret(dir / "listener.key", pki.server_key_pem);
}

ts::endpoint tls_endpoint(std::uint16_t port, const ts::pki& trusted) {
    ts::endpoint e;
    e.port = port;
    e.tls = true;
    e.ca_pem = trusted.ca_cert_pem;
    e.server_name = "localhost";
    e.timeout = 5s;
    return e;
}

}  // namespace

BOOST_AUTO_TEST_CASE(reload_rotates_the_listener_certificate_for_new_handshakes) {
    ts::emulated_upstream up;
    const auto first = ts::make_test_pki();
    const auto second = ts::make_test_pki();
    const auto& dir = up.dir.path();
    write_listener_pair(dir, first);
    file_configured_gateway gw(up, "tls_cert = \"" + (dir / "listener.pem").string() +
                                       "\"\ntls_key = \"" + (dir / "listener.key").string() +
                                       "\"\n");
    const auto port = gw.app().data_port();
    const auto path = ts::gateway_runner::image_path("ops-5");
    const ts::header_list key{{"Authorization", "Bearer key-a"}};
    ts::connection old_conn(tls_endpoint(port, first));
    BOOST_TEST(old_conn.request(verb::get, path, key).status == 200u);

    // The renewal tool replaces both files in place; the reload reads them again.
    write_listener_pair(dir, second);
    const auto r = gw.reload();
    BOOST_TEST(r.status == 200u, r.body);
    // A new handshake presents the new certificate: verified against the new CA only.
    BOOST_TEST(ts::request(tls_endpoint(port, second), verb::get, path, key).status == 200u);
    BOOST_CHECK_THROW(ts::request(tls_endpoint(port, first), verb::get, path, key), std::exception);
    // The connection made before keeps its session.
    BOOST_TEST(old_conn.request(verb::get, path, key).status == 200u);

    // An unreadable certificate fails the reload whole; the second pair stays in use.
    ts::write_file((dir / "listener.pem").string(), "not a certificate\n");
    const auto bad = gw.reload();
    BOOST_TEST(bad.status == 400u);
    BOOST_TEST(contains(bad.body, "server.tls_cert"), bad.body);
    BOOST_TEST(ts::request(tls_endpoint(port, second), verb::get, path, key).status == 200u);
}

BOOST_AUTO_TEST_CASE(every_answer_carries_a_request_id) {
    ts::emulated_upstream up;
    file_configured_gateway gw(up);
    // A sane client id comes back as sent.
    auto r = ts::request(gw.data(), verb::get, ts::gateway_runner::image_path("ops-6"),
                         {{"Authorization", "Bearer key-a"}, {"X-Request-Id", "trace.42:a-b_c"}});
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.header("X-Request-Id") == "trace.42:a-b_c");
    BOOST_TEST(r.count("X-Request-Id") == 1u);
    // Unsafe or overlong ids are replaced by a generated one; errors and admin answers too.
    for (const std::string& bad :
         {std::string("a b"), std::string("x\"y"), std::string(129, 'a')}) {
        r = ts::request(gw.data(), verb::get, "/nowhere", {{"X-Request-Id", bad}});
        BOOST_TEST(r.status == 404u);
        const auto id = r.header("X-Request-Id");
        BOOST_TEST(!id.empty());
        BOOST_TEST(id != bad);
    }
    const auto a1 = ts::request(gw.admin(), verb::get, "/healthz").header("X-Request-Id");
    const auto a2 = ts::request(gw.admin(), verb::get, "/healthz").header("X-Request-Id");
    BOOST_TEST(!a1.empty());
    BOOST_TEST(a1 != a2);
    // A request so broken it was never parsed still gets one.
    const auto raw = ts::raw_exchange(gw.data(), "GARBAGE\r\n\r\n");
    BOOST_TEST(contains(raw, "X-Request-Id: "), raw);
}

BOOST_AUTO_TEST_CASE(access_log_keeps_misses_samples_hits_and_names_the_request_id) {
    ts::emulated_upstream up;
    std::ostringstream lines;
    auto log = std::make_shared<spdlog::logger>(
        "ops", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
    std::string sampled_out;
    {
        file_configured_gateway gw(up, "", "[log]\naccess_log = true\naccess_log_hit_sample = 3\n",
                                   log);
        // One connection: one worker, one hit countdown.
        ts::connection c(gw.data());
        const ts::header_list first{{"Authorization", "Bearer key-a"},
                                    {"X-Request-Id", "ops-miss-1"}};
        BOOST_TEST(c.request(verb::get, ts::gateway_runner::image_path("ops-7"), first).status ==
                   200u);
        for (int i = 0; i < 9; ++i) {
            const auto r = c.request(verb::get, ts::gateway_runner::image_path("ops-7"),
                                     {{"Authorization", "Bearer key-a"}});
            BOOST_TEST(contains(r.header("Cache-Status"), "hit"));
        }
        sampled_out = gw.metrics();
    }  // the gateway is gone: every queued line is written
    const auto text = lines.str();
    BOOST_TEST(contains(text, R"(req=ops-miss-1 GET ")"), text);
    std::size_t hits = 0;
    for (std::size_t at = 0; (at = text.find(R"(cache="hit")", at)) != std::string::npos; ++at) {
        ++hits;
    }
    BOOST_TEST(hits == 3u, text);  // hits 1, 4 and 7 of 9
    BOOST_TEST(contains(sampled_out, "imagegate_access_log_hits_sampled_out_total 6\n"));
    BOOST_TEST(contains(sampled_out, "imagegate_access_log_dropped_total 0\n"));
}
