// The cache path end to end: the real composition root in front of the emulator over
// verified TLS. Upstream call counts are read from the emulator.
#define BOOST_TEST_MODULE cache_path_test
#include "tests/integration/gateway_fixture.hpp"

#include <boost/beast/http/verb.hpp>

namespace ts = imagegate::testing;
using ts::contains;
using verb = boost::beast::http::verb;
using namespace std::chrono_literals;

using fixture = ts::emulated_upstream;

BOOST_FIXTURE_TEST_CASE(miss_then_hit_costs_one_upstream_call, fixture) {
    ts::gateway_runner gw(settings);
    const auto path = gw.image_path("img-1");
    const auto first = gw.get(path);
    BOOST_TEST(first.status == 200u);
    BOOST_TEST(
        contains(first.header("Cache-Status"), "imagegate; fwd=miss; fwd-status=200; stored"));
    BOOST_TEST(first.header("Age") == "0");
    BOOST_TEST(first.header("Content-Type") == "application/json");
    BOOST_TEST(contains(first.body, R"("id":"img-1")"));
    const auto second = gw.get(path);
    BOOST_TEST(second.status == 200u);
    BOOST_TEST(contains(second.header("Cache-Status"), "imagegate; hit; ttl="));
    BOOST_TEST(second.body == first.body);
    BOOST_TEST(emu->requests_for("img-1") == 1u);
    BOOST_TEST(gw.metric("imagegate_cache_hits_total") == 1);
    BOOST_TEST(gw.metric("imagegate_cache_misses_total") == 1);
}

BOOST_FIXTURE_TEST_CASE(upstream_cookies_and_cache_headers_never_reach_clients, fixture) {
    ts::gateway_runner gw(settings);
    for (int i = 0; i < 2; ++i) {
        const auto r = gw.get(gw.image_path("cookie-check"));
        BOOST_TEST(r.status == 200u);
        BOOST_TEST(r.count("set-cookie") == 0u);
        BOOST_TEST(r.count("cache-control") == 0u);
        BOOST_TEST(r.count("expires") == 0u);
        BOOST_TEST(r.count("cf-ray") == 0u);
    }
}

BOOST_FIXTURE_TEST_CASE(encoded_slashes_are_one_entry, fixture) {
    ts::gateway_runner gw(settings);
    const auto a = gw.get(gw.image_path("team%2Flogo"));
    const auto b = gw.get(gw.image_path("team%2flogo"));
    BOOST_TEST(a.status == 200u);
    BOOST_TEST(b.status == 200u);
    BOOST_TEST(contains(a.body, R"("id":"team/logo")"));
    BOOST_TEST(contains(b.header("Cache-Status"), "hit"));
    BOOST_TEST(emu->requests_for("team/logo") == 1u);
}

BOOST_FIXTURE_TEST_CASE(head_answers_headers_only, fixture) {
    ts::gateway_runner gw(settings);
    const std::string out =
        ts::raw_exchange(gw.data(2s), "HEAD " + gw.image_path("head-1") +
                                          " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    BOOST_TEST(out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0u);
    BOOST_TEST(contains(out, "Content-Length: "));
    BOOST_TEST(out.substr(out.size() - 4) == "\r\n\r\n");  // no body after the head
    BOOST_TEST(contains(gw.get(gw.image_path("head-1")).header("Cache-Status"), "hit"));
}

BOOST_FIXTURE_TEST_CASE(invalid_answers_are_502_and_not_stored, fixture) {
    settings.upstream.max_body_bytes = 64 * 1024;
    ts::gateway_runner gw(settings);
    struct row {
        ts::fault_kind kind;
        std::string id;
        bool retry_may_help;  // x-should-retry: false when asking again cannot help
    };
    const row rows[] = {
        {ts::fault_kind::invalid_json, "bad-json", false},
        {ts::fault_kind::wrong_id, "bad-id", false},
        {ts::fault_kind::wrong_types, "bad-types", false},
        {ts::fault_kind::oversized, "too-big", false},
        {ts::fault_kind::truncated, "cut-short", true},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(ts::to_string(r.kind)) {
            ts::fault_rule f;
            f.kind = r.kind;
            f.image_id = r.id;
            f.times = 1;
            f.size = 256 * 1024;
            emu->add_fault(f);
            const auto bad = gw.get(gw.image_path(r.id));
            BOOST_TEST(bad.status == 502u);
            BOOST_TEST(contains(bad.body, R"("success":false)"));
            BOOST_TEST(contains(bad.body, R"("code":995)"));
            BOOST_TEST((bad.header("x-should-retry") == "false") == !r.retry_may_help);
            // The failure is remembered for a second: a retry at once (SDKs retry 5xx) is
            // answered the same without an upstream call, and says when to come back.
            const auto again = gw.get(gw.image_path(r.id));
            BOOST_TEST(again.status == 502u);
            BOOST_TEST(again.header("Retry-After") == "1");
            BOOST_TEST(std::stoi(again.header("retry-after-ms")) <= 1000);
            BOOST_TEST(emu->requests_for(r.id) == 1u);
            // Nothing was stored: once the second is over the next request goes upstream
            // again and succeeds.
            ts::response good;
            BOOST_TEST(ts::eventually([&] {
                good = gw.get(gw.image_path(r.id));
                return good.status == 200u;
            }));
            BOOST_TEST(contains(good.header("Cache-Status"), "fwd=miss"));
            BOOST_TEST(emu->requests_for(r.id) == 2u);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(chunked_bodies_are_read_and_stored, fixture) {
    ts::gateway_runner gw(settings);
    ts::fault_rule f;
    f.kind = ts::fault_kind::chunked;
    f.image_id = "chunky";
    emu->add_fault(f);
    const auto r = gw.get(gw.image_path("chunky"));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.body, R"("id":"chunky")"));
    BOOST_TEST(contains(gw.get(gw.image_path("chunky")).header("Cache-Status"), "hit"));
}

BOOST_FIXTURE_TEST_CASE(upstream_5xx_is_502_envelope, fixture) {
    settings.cache.stale_if_error = 0ms;
    ts::gateway_runner gw(settings);
    ts::fault_rule f;
    f.kind = ts::fault_kind::status;
    f.status = 503;
    f.image_id = "down";
    emu->add_fault(f);
    const auto r = gw.get(gw.image_path("down"));
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(contains(r.body, R"("code":99505)"));
    BOOST_TEST(r.header("Cache-Status").find("imagegate") == 0u);
}

BOOST_FIXTURE_TEST_CASE(upstream_4xx_passes_through_unstored, fixture) {
    settings.secret.upstream_token = "not-the-emulator-token";
    ts::gateway_runner gw(settings);
    for (int i = 0; i < 2; ++i) {
        const auto r = gw.get(gw.image_path("forbidden"));
        BOOST_TEST(r.status == 403u);
        BOOST_TEST(contains(r.body, R"("code":10000)"));
    }
    BOOST_TEST(emu->requests_for("forbidden") == 2u);
}

BOOST_FIXTURE_TEST_CASE(not_found_is_answered_and_negatively_cached, fixture) {
    ts::emulator_runner strict;  // only the seeded images exist
    ts::temp_dir d;
    auto s = ts::gateway_settings(*strict, d);
    s.cache.negative_ttl = 300ms;
    ts::gateway_runner gw(s);
    const auto a = gw.get(gw.image_path("missing"));
    BOOST_TEST(a.status == 404u);
    BOOST_TEST(contains(a.body, R"("code":5404)"));
    const auto b = gw.get(gw.image_path("missing"));
    BOOST_TEST(b.status == 404u);
    BOOST_TEST(contains(b.header("Cache-Status"), "hit"));
    BOOST_TEST(strict->requests_for("missing") == 1u);
    std::this_thread::sleep_for(350ms);
    BOOST_TEST(gw.get(gw.image_path("missing")).status == 404u);
    BOOST_TEST(strict->requests_for("missing") == 2u);
}

BOOST_FIXTURE_TEST_CASE(untrusted_certificate_is_502_and_nothing_sent, fixture) {
    ts::write_file((dir.path() / "other-ca.pem").string(), ts::make_test_pki().ca_cert_pem);
    settings.upstream.ca_file = (dir.path() / "other-ca.pem").string();
    ts::gateway_runner gw(settings);
    const auto r = gw.get(gw.image_path("tls-check"));
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(contains(r.body, R"("code":99503)"));
    BOOST_TEST(emu->snapshot().requests == 0u);
}

BOOST_FIXTURE_TEST_CASE(upstream_timeout_is_504_and_connection_not_reused, fixture) {
    settings.upstream.request_timeout = 300ms;
    settings.cache.stale_if_error = 0ms;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("warm")).status == 200u);
    BOOST_TEST(emu->connections_accepted() == 1u);
    ts::fault_rule f;
    f.kind = ts::fault_kind::hang;
    f.image_id = "slow";
    f.times = 1;
    emu->add_fault(f);
    const auto start = std::chrono::steady_clock::now();
    const auto r = gw.get(gw.image_path("slow"));
    BOOST_TEST(r.status == 504u);
    BOOST_TEST(contains(r.body, R"("code":99504)"));
    BOOST_TEST((std::chrono::steady_clock::now() - start < 2s));
    // The timed-out connection was closed, not parked: the next fetch opens a new one.
    BOOST_TEST(gw.get(gw.image_path("after")).status == 200u);
    BOOST_TEST(emu->connections_accepted() == 2u);
}

// The default TTL, without waiting it out: the gateway's clock is moved (time_source).
BOOST_FIXTURE_TEST_CASE(ttl_expiry_refetches, fixture) {
    settings.cache.ttl = 5min;
    settings.cache.stale_while_revalidate = 0ms;
    settings.cache.stale_if_error = 0ms;
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("short")).status == 200u);
    gw.app().time().advance(5min - 1s);
    BOOST_TEST(contains(gw.get(gw.image_path("short")).header("Cache-Status"), "hit"));
    gw.app().time().advance(1s);
    const auto r = gw.get(gw.image_path("short"));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.header("Cache-Status"), "fwd=miss"));
    BOOST_TEST(emu->requests_for("short") == 2u);
}

BOOST_FIXTURE_TEST_CASE(byte_budget_holds_under_fill_with_lru_order, fixture) {
    settings.cache.max_bytes = 16 * 1024;
    settings.cache.max_entry_bytes = 4 * 1024;
    settings.cache.shards = 1;
    ts::gateway_runner gw(settings);
    for (int i = 0; i < 60; ++i) {
        BOOST_TEST(gw.get(gw.image_path("fill-" + std::to_string(i))).status == 200u);
        BOOST_TEST(gw.metric("imagegate_cache_bytes") <= 16 * 1024);
    }
    BOOST_TEST(gw.metric("imagegate_cache_evictions_total") > 0);
    // Oldest gone, newest still there.
    BOOST_TEST(contains(gw.get(gw.image_path("fill-59")).header("Cache-Status"), "hit"));
    BOOST_TEST(contains(gw.get(gw.image_path("fill-0")).header("Cache-Status"), "fwd=miss"));
    BOOST_TEST(emu->requests_for("fill-0") == 2u);
}

BOOST_FIXTURE_TEST_CASE(purge_removes_entries, fixture) {
    settings.secret.admin_token = "purge-token-0123456789";
    const ts::header_list admin_auth{{"Authorization", "Bearer purge-token-0123456789"}};
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("p%2F1")).status == 200u);
    BOOST_TEST(gw.get(gw.image_path("p2")).status == 200u);
    auto r = ts::request(gw.admin(), verb::delete_,
                         "/cache/accounts/" + ts::test_account + "/images/p%2f1", admin_auth);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(contains(r.body, R"("purged":1)"));
    BOOST_TEST(contains(gw.get(gw.image_path("p%2F1")).header("Cache-Status"), "fwd=miss"));
    r = ts::request(gw.admin(), verb::delete_, "/cache/accounts/" + ts::test_account, admin_auth);
    BOOST_TEST(contains(r.body, R"("purged":2)"));
    BOOST_TEST(contains(gw.get(gw.image_path("p2")).header("Cache-Status"), "fwd=miss"));
}

// A purge while the fetch of that image is in flight wins (issue 11): the fetch, which may
// carry the record from before the purge, still answers the requests waiting for it, but is
// not stored; the next request fetches again. Both purge kinds.
BOOST_FIXTURE_TEST_CASE(a_purge_during_a_fetch_keeps_its_answer_out_of_the_cache, fixture) {
    settings.secret.admin_token = "purge-token-0123456789";
    const ts::header_list admin_auth{{"Authorization", "Bearer purge-token-0123456789"}};
    ts::gateway_runner gw(settings);
    struct row {
        std::string id;
        std::string purge;  // admin target
    };
    const row rows[] = {
        {"race-1", "/cache/accounts/" + ts::test_account + "/images/race-1"},
        {"race-2", "/cache/accounts/" + ts::test_account},
    };
    double raced = 0;
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.purge) {
            ts::fault_rule slow;
            slow.kind = ts::fault_kind::delay;
            slow.image_id = r.id;
            slow.times = 1;
            slow.delay = 800ms;
            emu->add_fault(slow);
            ts::response leader;
            ts::response follower;
            std::thread a([&] { leader = gw.get(gw.image_path(r.id)); });
            // The upstream has the request: the fetch is in flight.
            BOOST_REQUIRE(ts::eventually([&] { return emu->requests_for(r.id) == 1u; }));
            const double collapsed = gw.metric("imagegate_collapsed_requests_total");
            std::thread b([&] { follower = gw.get(gw.image_path(r.id)); });
            // The follower joined the flight.
            BOOST_REQUIRE(ts::eventually(
                [&] { return gw.metric("imagegate_collapsed_requests_total") > collapsed; }));
            const auto purged = ts::request(gw.admin(), verb::delete_, r.purge, admin_auth);
            BOOST_TEST(purged.status == 200u);
            a.join();
            b.join();
            // The waiters got the fetch's answer, unstored.
            BOOST_TEST(leader.status == 200u);
            BOOST_TEST(follower.status == 200u);
            BOOST_TEST(contains(leader.body, "\"id\":\"" + r.id + "\""));
            BOOST_TEST(!contains(leader.header("Cache-Status"), "stored"));
            BOOST_TEST(gw.metric("imagegate_cache_purge_raced_total") == ++raced);
            // The next request misses and fetches again, and that answer is stored.
            const auto next = gw.get(gw.image_path(r.id));
            BOOST_TEST(contains(next.header("Cache-Status"), "fwd=miss; fwd-status=200; stored"));
            BOOST_TEST(emu->requests_for(r.id) == 2u);
            BOOST_TEST(contains(gw.get(gw.image_path(r.id)).header("Cache-Status"), "hit"));
        }
    }
}
