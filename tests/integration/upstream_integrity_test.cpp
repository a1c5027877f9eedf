// No sequence of upstream bytes makes one request's answer another's: the real composition
// root over verified TLS in front of a scripted raw upstream that sends interim heads, late
// answers, duplicate and trailing responses, close-delimited bodies and 101. One pooled
// upstream connection, so every later request would read what an earlier one left behind.
#define BOOST_TEST_MODULE upstream_integrity_test
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/scripted_upstream.hpp"

#include <boost/beast/http/verb.hpp>

namespace ts = imagegate::testing;
using ts::contains;
using namespace std::chrono_literals;

namespace {

const std::string account_a = ts::test_account;
const std::string account_b = "11111111111111111111111111111111";

// Passthrough credentials: the scripted upstream accepts any credential but `refused`.
const std::string accepted = "accepted-token-0123456789";
const std::string refused = "refused-token-9876543210";

ts::header_list bearer(const std::string& t) { return {{"Authorization", "Bearer " + t}}; }

struct fixture {
    explicit fixture(ts::scripted_upstream_options o = {}) : upstream(std::move(o)) {
        const auto ca = (dir.path() / "ca.pem").string();
        ts::write_file(ca, upstream.ca_pem());
        settings.server.listen = "127.0.0.1:0";
        settings.server.admin_listen = "127.0.0.1:0";
        // One worker, so one pool: each worker pools its own upstream connections, and these
        // cases need every request on the same one.
        settings.server.threads = 1;
        settings.server.drain_timeout = 2s;
        settings.upstream.url = upstream.base_url();
        settings.upstream.ca_file = ca;
        settings.upstream.connect_timeout = 2s;
        settings.upstream.request_timeout = 3s;
        // One connection: whatever a request leaves on it is there for the next one.
        settings.upstream.max_connections = 1;
        settings.secret.upstream_token = "scripted-gateway-token";
        settings.log.access_log = false;
    }

    ts::scripted_upstream upstream;
    ts::temp_dir dir;
    imagegate::config::settings settings;
};

ts::scripted_upstream_options refusing() {
    ts::scripted_upstream_options o;
    o.refused_credentials = {refused};
    return o;
}

/// auth.mode = "passthrough" in front of an upstream that refuses `refused`.
struct passthrough_fixture : fixture {
    passthrough_fixture() : fixture(refusing()) { settings.auth.mode = "passthrough"; }
};

std::string path(std::string_view id, std::string_view account = account_a) {
    return ts::gateway_runner::image_path(id, account);
}

constexpr std::string_view served_unstored =
    R"(imagegate_upstream_uncertain_answers_total{outcome="served_unstored"})";
constexpr std::string_view refused_uncertain =
    R"(imagegate_upstream_uncertain_answers_total{outcome="refused"})";

bool stored(const ts::response& r) { return contains(r.header("Cache-Status"), "stored"); }
bool hit(const ts::response& r) { return contains(r.header("Cache-Status"), "; hit"); }

/// `r` is the 200 record the upstream sent for `account` and image `id`.
bool is_record_of(const ts::response& r, std::string_view account, std::string_view id) {
    return r.status == 200 && contains(r.body, ts::account_marker(account)) &&
           contains(r.body, R"("id":")" + std::string(id) + "\"");
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(an_early_hint_then_a_late_answer_is_the_answer, fixture) {
    ts::gateway_runner gw(settings);
    const auto a = gw.get(path("early103-1", account_a));
    BOOST_TEST(is_record_of(a, account_a, "early103-1"), a.status << " " << a.body);
    BOOST_TEST(stored(a));
    // The next request on that connection (another account, another id) gets its own answer.
    const auto b = gw.get(path("plain-1", account_b));
    BOOST_TEST(is_record_of(b, account_b, "plain-1"), b.status << " " << b.body);
    BOOST_TEST(hit(gw.get(path("early103-1", account_a))));
    const auto seen = upstream.requests();
    BOOST_REQUIRE(seen.size() == 2u);
    // Skipping the 103 left the connection clean, so it was reused.
    BOOST_TEST(seen[1].connection == seen[0].connection);
    BOOST_TEST(gw.metric("imagegate_upstream_interim_responses_total") == 1);
}

BOOST_FIXTURE_TEST_CASE(interim_heads_do_not_extend_the_deadline, fixture) {
    settings.upstream.request_timeout = 400ms;
    settings.cache.stale_if_error = 0ms;
    ts::gateway_runner gw(settings);
    const auto start = std::chrono::steady_clock::now();
    // The 103 comes at once, the answer 500 ms later: past the one exchange deadline.
    const auto a = gw.get(path("early103-slow"));
    BOOST_TEST(a.status == 504u);
    BOOST_TEST((std::chrono::steady_clock::now() - start < 1500ms));
    // The late answer is never read as the next one: that request goes on a new connection.
    const auto b = gw.get(path("plain-2", account_b));
    BOOST_TEST(is_record_of(b, account_b, "plain-2"), b.status << " " << b.body);
    const auto seen = upstream.requests();
    BOOST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[1].on_connection == 1u);
}

BOOST_FIXTURE_TEST_CASE(passthrough_a_refused_credential_never_gets_another_callers_answer,
                        passthrough_fixture) {
    ts::gateway_runner gw(settings);
    const std::string id = "early103-pass";
    // A, accepted: its answer comes after a 103 and is stored.
    const auto a = gw.get(path(id), bearer(accepted));
    BOOST_TEST(is_record_of(a, account_a, id), a.status << " " << a.body);
    BOOST_TEST(stored(a));
    const double stored_before = gw.metric("imagegate_cache_stored_total");
    // B, refused by the upstream: its own 403, never A's record, nothing stored, no proof
    // (a second request is refused upstream again instead of reading A's cached entry).
    for (int i = 0; i < 2; ++i) {
        const auto b = gw.get(path(id), bearer(refused));
        BOOST_TEST(b.status == 403u, b.status << " " << b.body);
        BOOST_TEST(contains(b.body, R"("code":10000)"));
        BOOST_TEST(!contains(b.body, ts::account_marker(account_a)));
        BOOST_TEST(!stored(b));
        BOOST_TEST(!hit(b));
    }
    BOOST_TEST(gw.metric("imagegate_cache_stored_total") == stored_before);
    std::size_t from_b = 0;
    for (const auto& r : upstream.requests()) {
        if (r.credential == refused) {
            ++from_b;
            // Without a proof for the account B asks on a new connection: only an answer
            // that is certainly its own could prove it.
            BOOST_TEST(r.on_connection == 1u);
        }
    }
    BOOST_TEST(from_b == 2u);
    BOOST_TEST(hit(gw.get(path(id), bearer(accepted))));
    // A, proven, asks for another id on a pooled connection.
    BOOST_TEST(stored(gw.get(path("plain-8"), bearer(accepted))));
    BOOST_TEST(upstream.requests().back().on_connection == 2u);
}

BOOST_FIXTURE_TEST_CASE(interim_heads_in_the_same_packet_as_the_answer_are_skipped, fixture) {
    ts::gateway_runner gw(settings);
    for (const std::string id : {"same-packet-100-1", "same-packet-103-1", "many1xx-8-1"}) {
        const auto r = gw.get(path(id));
        BOOST_TEST(is_record_of(r, account_a, id), id << ": " << r.status << " " << r.body);
        BOOST_TEST(stored(r), id);
        BOOST_TEST(hit(gw.get(path(id))), id);
    }
    BOOST_TEST(gw.metric("imagegate_upstream_interim_responses_total") == 10);
    // Nine interim heads are too many: 502, nothing stored, the connection dropped.
    const auto r = gw.get(path("many1xx-9-1"));
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(!stored(r));
    // A second ask within a second is answered from the failure memory, no upstream call.
    BOOST_TEST(gw.get(path("many1xx-9-1")).status == 502u);
    BOOST_TEST(upstream.requests_for("many1xx-9-1") == 1u);
    // The next request goes out on a new connection: the old one was dropped.
    BOOST_TEST(gw.get(path("many1xx-9-2")).status == 502u);
    const auto seen = upstream.requests();
    BOOST_TEST(seen.back().on_connection == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_late_duplicate_answer_is_never_another_accounts_answer, fixture) {
    ts::gateway_runner gw(settings);
    const auto a = gw.get(path("double-1", account_a));
    BOOST_TEST(is_record_of(a, account_a, "double-1"), a.status << " " << a.body);
    // The upstream repeats A's answer 300 ms later on the idle pooled connection.
    BOOST_REQUIRE(upstream.wait_for_strays(1, 5s));
    // B asks for the same id in another account: its own record, stored as its own.
    const auto b = gw.get(path("double-1", account_b));
    BOOST_TEST(is_record_of(b, account_b, "double-1"), b.status << " " << b.body);
    const auto again = gw.get(path("double-1", account_b));
    BOOST_TEST(hit(again));
    BOOST_TEST(contains(again.body, ts::account_marker(account_b)));
    BOOST_TEST(!contains(again.body, ts::account_marker(account_a)));
    const auto seen = upstream.requests();
    BOOST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[1].on_connection == 1u);  // the readable idle connection was discarded
    BOOST_TEST(gw.metric("imagegate_upstream_unread_discards_total") >= 1);
}

BOOST_FIXTURE_TEST_CASE(a_late_not_found_is_never_stored_for_the_next_request, fixture) {
    ts::gateway_runner gw(settings);
    const auto a = gw.get(path("double5404-1", account_a));
    BOOST_TEST(is_record_of(a, account_a, "double5404-1"), a.status << " " << a.body);
    BOOST_REQUIRE(upstream.wait_for_strays(1, 5s));
    const auto b = gw.get(path("plain-3", account_b));
    BOOST_TEST(is_record_of(b, account_b, "plain-3"), b.status << " " << b.body);
    // Nothing smuggled was stored: the entry is B's record, not a negative entry.
    const auto again = gw.get(path("plain-3", account_b));
    BOOST_TEST(hit(again));
    BOOST_TEST(is_record_of(again, account_b, "plain-3"));
    BOOST_TEST(upstream.requests().back().on_connection == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_response_trailing_the_answer_is_never_an_answer, fixture) {
    ts::gateway_runner gw(settings);
    // The answer and a 404 right behind it, each in its own TLS record.
    const auto a = gw.get(path("trailing-1", account_a));
    BOOST_TEST(is_record_of(a, account_a, "trailing-1"), a.status << " " << a.body);
    // On a fresh connection the first answer is this request's. When the stray record had
    // arrived by the time the answer completed, the upstream visibly sent more than it was
    // asked for: served, not stored. When it had not (timing), the answer was clean and is
    // stored — it is certainly this request's — and the stray is found on the idle connection.
    BOOST_TEST(gw.metric(served_unstored) == (stored(a) ? 0 : 1));
    // Written right behind the answer, the 404 is in flight by now: without the prompt ACK
    // TCP would hold it at the upstream until the next request went out (Nagle), and that
    // request would read it as its answer.
    BOOST_REQUIRE(upstream.wait_for_strays(1, 5s));
    const auto b = gw.get(path("plain-4", account_b));
    BOOST_TEST(is_record_of(b, account_b, "plain-4"), b.status << " " << b.body);
    BOOST_TEST(hit(gw.get(path("plain-4", account_b))));
    BOOST_TEST(upstream.requests().back().on_connection == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_trailing_response_on_a_reused_connection_is_refused, fixture) {
    ts::gateway_runner gw(settings);
    BOOST_TEST(stored(gw.get(path("plain-7", account_a))));
    // The second request on that connection is answered with stray bytes behind it: the
    // answer read may belong to another request, so nobody gets it. Answer and stray come in
    // one TLS record, so the stray is there when the answer ends: with a record of its own,
    // whether it has arrived by then is timing (a slow run saw a clean answer, and the stray
    // was found on the idle connection later, as in the test above).
    const auto r = gw.get(path("glued-2", account_b));
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(!stored(r));
    BOOST_TEST(!contains(r.body, ts::account_marker(account_b)));
    BOOST_TEST(upstream.requests().back().on_connection == 2u);
    BOOST_TEST(gw.metric(refused_uncertain) == 1);
    BOOST_TEST(gw.metric(served_unstored) == 0);
}

BOOST_FIXTURE_TEST_CASE(close_delimited_answers_are_never_pooled, fixture) {
    ts::gateway_runner gw(settings);
    const auto a = gw.get(path("close-delim-1"));
    BOOST_TEST(is_record_of(a, account_a, "close-delim-1"), a.status << " " << a.body);
    // Delimited by the close, not framed: served, not stored.
    BOOST_TEST(!stored(a));
    BOOST_TEST(gw.metric(served_unstored) == 1);
    const auto b = gw.get(path("plain-5", account_b));
    BOOST_TEST(is_record_of(b, account_b, "plain-5"), b.status << " " << b.body);
    BOOST_TEST(upstream.connections_accepted() == 2u);
    BOOST_TEST(upstream.requests().back().on_connection == 1u);
}

BOOST_FIXTURE_TEST_CASE(switching_protocols_is_502_and_drops_the_connection, fixture) {
    ts::gateway_runner gw(settings);
    const auto a = gw.get(path("switch101-1"));
    BOOST_TEST(a.status == 502u);
    BOOST_TEST(!stored(a));
    const auto b = gw.get(path("plain-6", account_b));
    BOOST_TEST(is_record_of(b, account_b, "plain-6"), b.status << " " << b.body);
    const auto seen = upstream.requests();
    BOOST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[1].on_connection == 1u);
}
