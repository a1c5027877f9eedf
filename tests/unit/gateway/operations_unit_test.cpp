// Pure pieces of operating the gateway: the reload plan (which keys apply live), the
// X-Request-Id rules, and the effective configuration as TOML.
#include "config/load.hpp"
#include "gateway/http/request_id.hpp"
#include "gateway/runtime/reload.hpp"

#include <boost/test/unit_test.hpp>

#include <set>

namespace gw = imagegate::gateway;
namespace config = imagegate::config;

BOOST_AUTO_TEST_SUITE(reload_plan)

BOOST_AUTO_TEST_CASE(live_and_restart_keys) {
    struct row {
        std::string key;
        bool data_tls;
        bool live;
    };
    const row rows[] = {
        {"auth.client_keys", false, true},
        {"auth.keys_file", false, true},
        {"admin.token", false, true},
        {"admin.token_file", false, true},
        {"log.level", false, true},
        {"log.format", false, true},
        {"log.access_log", false, true},
        {"log.access_log_hit_sample", false, true},
        {"cache.ttl", false, true},
        {"cache.stale_if_error", false, true},
        {"server.tls_cert", true, true},
        {"server.tls_key", true, true},
        {"server.tls_cert", false, false},
        {"server.listen", false, false},
        {"server.admin_listen", true, false},
        {"server.threads", false, false},
        {"cache.max_bytes", false, false},
        {"shield.budget", false, true},
        {"shield.window", false, true},
        {"shield.burst", false, true},
        {"shield.unproven_budget", false, true},
        {"shield.max_queue_wait", false, false},
        {"shield.max_credentials", false, false},
        {"upstream.url", false, false},
        {"upstream.token", false, false},
        {"auth.mode", false, false},
    };
    for (const auto& r : rows) {
        BOOST_TEST(gw::is_live_key(r.key, r.data_tls) == r.live, r.key << " tls=" << r.data_tls);
    }
}

BOOST_AUTO_TEST_CASE(restart_keys_keep_their_running_values) {
    config::settings current;
    current.secret.upstream_token = "old-token";
    config::settings loaded = current;
    loaded.server.threads = 8;
    loaded.cache.max_bytes = 64 * config::mib;
    loaded.cache.ttl = std::chrono::seconds(7);
    loaded.log.level = "debug";
    loaded.secret.upstream_token = "new-token";
    loaded.auth.client_keys = {{std::string(64, 'a'), {"*"}}};
    const auto plan = gw::plan_reload(current, loaded, false);
    BOOST_TEST(
        (plan.applied == std::vector<std::string>{"cache.ttl", "log.level", "auth.client_keys"}));
    BOOST_TEST((plan.restart_required ==
                std::vector<std::string>{"server.threads", "cache.max_bytes", "upstream.token"}));
    BOOST_TEST(plan.next.server.threads == current.server.threads);
    BOOST_TEST(plan.next.cache.max_bytes == current.cache.max_bytes);
    BOOST_TEST(plan.next.secret.upstream_token == "old-token");
    BOOST_TEST(plan.next.cache.ttl.count() == 7000);
    BOOST_TEST(plan.next.log.level == "debug");
    BOOST_TEST(plan.next.auth.client_keys.size() == 1u);
}

BOOST_AUTO_TEST_CASE(tls_paths_change_live_but_tls_does_not_switch) {
    config::settings current;
    current.server.tls_cert = "a.pem";
    current.server.tls_key = "a.key";
    config::settings loaded = current;
    loaded.server.tls_cert = "b.pem";
    auto plan = gw::plan_reload(current, loaded, true);
    BOOST_TEST((plan.applied == std::vector<std::string>{"server.tls_cert"}));
    BOOST_TEST(plan.next.server.tls_cert == "b.pem");
    // Turning TLS off needs a restart: both paths stay.
    loaded.server.tls_cert.clear();
    loaded.server.tls_key.clear();
    plan = gw::plan_reload(current, loaded, true);
    BOOST_TEST(plan.applied.empty());
    BOOST_TEST(plan.restart_required.size() == 2u);
    BOOST_TEST(plan.next.server.tls_cert == "a.pem");
    BOOST_TEST(plan.next.server.tls_key == "a.key");
    // Nothing changed: nothing to report.
    plan = gw::plan_reload(current, current, true);
    BOOST_TEST(plan.applied.empty());
    BOOST_TEST(plan.restart_required.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(request_id)

BOOST_AUTO_TEST_CASE(client_ids_are_short_safe_tokens) {
    struct row {
        std::string id;
        bool valid;
    };
    const row rows[] = {
        {"abc", true},
        {"A-Z_a.z:0-9", true},
        {std::string(128, 'x'), true},
        {std::string(129, 'x'), false},
        {"", false},
        {"a b", false},
        {"a\"b", false},
        {"a\\b", false},
        {"a\r\nb", false},
        {"caf\xc3\xa9", false},
        {"a/b", false},
        {"a=b", false},
    };
    for (const auto& r : rows) {
        BOOST_TEST(gw::is_valid_request_id(r.id) == r.valid, r.id);
    }
}

BOOST_AUTO_TEST_CASE(generated_ids_are_valid_and_distinct) {
    std::set<std::string> seen;
    gw::request_id_buffer buf{};
    for (int i = 0; i < 1000; ++i) {
        const std::string id(gw::generate_request_id(buf));
        BOOST_TEST(gw::is_valid_request_id(id), id);
        seen.insert(id);
    }
    BOOST_TEST(seen.size() == 1000u);
}

BOOST_AUTO_TEST_CASE(the_first_valid_header_is_taken_else_one_is_generated) {
    gw::request_id_buffer buf{};
    boost::beast::http::fields h;
    BOOST_TEST(gw::request_id_for(nullptr, buf).size() > 0u);
    h.insert("X-Request-Id", "client-1");
    h.insert("X-Request-Id", "client-2");
    BOOST_TEST(gw::request_id_for(&h, buf) == "client-1");
    boost::beast::http::fields bad;
    bad.insert("x-request-id", "no spaces please");
    const auto id = gw::request_id_for(&bad, buf);
    BOOST_TEST(id != "no spaces please");
    BOOST_TEST(gw::is_valid_request_id(id));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(effective_config)

BOOST_AUTO_TEST_CASE(to_toml_reads_back_and_hides_secrets) {
    config::settings s;
    s.cache.ttl = std::chrono::seconds(90);
    s.log.access_log_hit_sample = 7;
    s.server.tls_cert = "path with \"quotes\".pem";
    s.secret.upstream_token = "secret-upstream";
    s.secret.admin_token = "secret-admin-token";
    const auto text = config::to_toml(s);
    BOOST_TEST(text.find("secret-") == std::string::npos);
    BOOST_TEST(text.find("upstream.token_file): <set>") != std::string::npos);
    config::settings back;
    const auto errors = config::apply_toml(text, "printed", back);
    BOOST_TEST(errors.empty());
    back.secret = s.secret;
    BOOST_TEST((back == s));
    BOOST_TEST(config::changed_keys(s, back).empty());
}

BOOST_AUTO_TEST_CASE(changed_keys_names_keys_and_secrets) {
    config::settings a;
    config::settings b;
    b.shield.burst = 10;
    b.secret.admin_token = "x";
    b.auth.client_keys = {{std::string(64, 'b'), {"*"}}};
    BOOST_TEST((config::changed_keys(a, b) ==
                std::vector<std::string>{"shield.burst", "auth.client_keys", "admin.token"}));
}

BOOST_AUTO_TEST_SUITE_END()
