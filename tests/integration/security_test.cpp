// The security boundary through real sockets: client keys decide who reads which account
// (before the cache and before any flight), purge needs the admin token, hostile HTTP is
// refused and closed, and no credential or upstream detail leaks into answers.
#define BOOST_TEST_MODULE security_test
#include "gateway/auth/authorizer.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/herd.hpp"

#include <cstdio>

namespace ts = imagegate::testing;
using ts::contains;
using verb = boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

std::string hex_sha256(std::string_view key) {
    std::string out;
    char buf[3];
    for (const auto b : imagegate::gateway::sha256(key)) {
        std::snprintf(buf, sizeof buf, "%02x", b);
        out += buf;
    }
    return out;
}

const std::string other_account = "11111111111111111111111111111111";

ts::emulator_options two_accounts() {
    ts::emulator_options o;
    o.any_image_exists = true;
    o.accounts = {ts::test_account, other_account};
    return o;
}

struct fixture : ts::emulated_upstream {
    fixture() : ts::emulated_upstream(two_accounts()) {}

    void with_keys() {
        settings.auth.client_keys = {{hex_sha256("key-a"), {ts::test_account}},
                                     {hex_sha256("key-all"), {"*"}}};
    }
};

ts::header_list bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

}  // namespace

BOOST_FIXTURE_TEST_CASE(client_keys_decide_before_the_cache, fixture) {
    with_keys();
    ts::gateway_runner gw(settings);
    const auto path = gw.image_path("secret-1");
    // No key, an unknown key: 401, and nothing goes upstream.
    auto r = gw.get(path);
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(contains(r.header("WWW-Authenticate"), "Bearer"));
    BOOST_TEST(contains(r.body, R"("code":99410)"));
    BOOST_TEST(gw.get(path, bearer("key-b")).status == 401u);
    BOOST_TEST(emu->requests_for("secret-1") == 0u);
    // The right key reads and fills the cache.
    BOOST_TEST(gw.get(path, bearer("key-a")).status == 200u);
    // A cached entry is still not readable without a key, nor across accounts.
    BOOST_TEST(gw.get(path).status == 401u);
    const auto other = gw.image_path("secret-1", other_account);
    r = gw.get(other, bearer("key-a"));
    BOOST_TEST(r.status == 403u);
    BOOST_TEST(contains(r.body, R"("code":99411)"));
    BOOST_TEST(gw.get(other, bearer("key-all")).status == 200u);
    BOOST_TEST(emu->requests_for("secret-1") == 2u);  // one per account
}

BOOST_FIXTURE_TEST_CASE(no_request_reads_across_accounts_under_single_flight, fixture) {
    with_keys();
    ts::gateway_runner gw(settings);
    ts::fault_rule f;
    f.kind = ts::fault_kind::delay;
    f.image_id = "herded";
    f.delay = 200ms;
    emu->add_fault(f);
    // 100 concurrent requests for one key of test_account: half with key-a (allowed), a
    // quarter with no key, a quarter with key-a for the other account's path.
    std::vector<std::string> targets;
    std::vector<std::string> headers;
    for (int i = 0; i < 100; ++i) {
        const bool cross = i % 4 == 3;
        targets.push_back(gw.image_path("herded", cross ? other_account : ts::test_account));
        headers.push_back(i % 4 == 2 ? "" : "Authorization: Bearer key-a\r\n");
    }
    const auto results = ts::run_herd(gw.app().data_port(), targets, 0, 20s, headers);
    for (int i = 0; i < 100; ++i) {
        const unsigned expected = i % 4 == 2 ? 401 : i % 4 == 3 ? 403 : 200;
        BOOST_TEST(results[static_cast<std::size_t>(i)].status == expected, "request " << i);
    }
    BOOST_TEST(emu->requests_for("herded") == 1u);
}

BOOST_FIXTURE_TEST_CASE(without_keys_client_authorization_is_ignored_not_forwarded, fixture) {
    ts::gateway_runner gw(settings);
    // An SDK always sends a token; the gateway uses its own upstream token regardless.
    const auto r = gw.get(gw.image_path("anon"), bearer("whatever-the-sdk-sends"));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(emu->requests_with("whatever-the-sdk-sends") == 0u);
    BOOST_TEST(emu->requests_with(emu->token()) == 1u);
}

BOOST_FIXTURE_TEST_CASE(purge_requires_the_admin_token, fixture) {
    settings.secret.admin_token = "admin-token-for-tests-42";
    ts::gateway_runner gw(settings);
    BOOST_TEST(gw.get(gw.image_path("keep")).status == 200u);
    const std::string target = "/cache/accounts/" + ts::test_account;
    BOOST_TEST(ts::request(gw.admin(), verb::delete_, target).status == 401u);
    BOOST_TEST(ts::request(gw.admin(), verb::delete_, target, bearer("guess")).status == 401u);
    BOOST_TEST(contains(gw.get(gw.image_path("keep")).header("Cache-Status"), "hit"));
    BOOST_TEST(
        ts::request(gw.admin(), verb::delete_, target, bearer("admin-token-for-tests-42")).status ==
        200u);
    BOOST_TEST(contains(gw.get(gw.image_path("keep")).header("Cache-Status"), "fwd=miss"));
    // Health and metrics stay open.
    BOOST_TEST(ts::request(gw.admin(), verb::get, "/healthz").status == 200u);
}

BOOST_FIXTURE_TEST_CASE(hostile_http_is_refused_and_closed, fixture) {
    settings.server.max_header_bytes = 4096;
    ts::gateway_runner gw(settings);
    const std::string path = gw.image_path("hostile");
    struct row {
        std::string name;
        std::string bytes;
        std::string status;
    };
    std::string many_fields;
    for (int i = 0; i < 150; ++i) {
        many_fields += "X-F" + std::to_string(i) + ": v\r\n";
    }
    const row rows[] = {
        {"duplicate content-length",
         "GET " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
         "400"},
        {"repeated equal content-length",
         "GET " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
         "400"},
        {"content-length list",
         "GET " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 0\r\n\r\n", "400"},
        {"chunked body on get",
         "GET " + path +
             " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
         "400"},
        {"control in header value", "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
         "400"},
        {"del in header name", "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-\x7f: a\r\n\r\n", "400"},
        {"nul in target",
         "GET /client/v4/a" + std::string(1, '\0') + "b HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
        {"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "505"},
        {"http/1.0 with body", "GET " + path + " HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", "400"},
        {"te with cl",
         "GET " + path +
             " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         "400"},
        {"obs-fold", "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "400"},
        {"nul in header",
         "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-A: a" + std::string(1, '\0') + "b\r\n\r\n",
         "400"},
        {"control in target",
         "GET /client/v4/a\x01"
         "b HTTP/1.1\r\nHost: x\r\n\r\n",
         "400"},
        {"long request line", "GET /" + std::string(8000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
         "431"},
        {"too many fields", "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + many_fields + "\r\n",
         "431"},
        {"body on get", "GET " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
         "400"},
        {"http/0.9", "GET " + path + "\r\n\r\n", "400"},
        {"http/3.0", "GET " + path + " HTTP/3.0\r\nHost: x\r\n\r\n", "505"},
        {"bare lf", "GET " + path + " HTTP/1.1\nHost: x\n\n", "400"},
        {"garbage after version", "GET " + path + " HTTP/1.1x\r\nHost: x\r\n\r\n", "400"},
        {"tls hello", std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11) + "\r\n\r\n",
         "400"},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.name) {
            const auto out = ts::raw_exchange(gw.data(2s), r.bytes);
            BOOST_TEST(out.rfind("HTTP/1.1 " + r.status + " ", 0) == 0u, out.substr(0, 60));
            BOOST_TEST(contains(out, "Connection: close"));
        }
    }
    BOOST_TEST(emu->requests_for("hostile") == 0u);
}

BOOST_FIXTURE_TEST_CASE(pipelined_garbage_after_a_valid_request, fixture) {
    ts::gateway_runner gw(settings);
    const auto out =
        ts::raw_exchange(gw.data(2s), "GET " + gw.image_path("pipe") +
                                          " HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03garbage\r\n\r\n");
    BOOST_TEST(out.rfind("HTTP/1.1 200 OK", 0) == 0u);
    const auto second = out.find("HTTP/1.1 400 ");
    BOOST_TEST(second != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(absolute_form_never_chooses_the_upstream, fixture) {
    ts::gateway_runner gw(settings);
    const auto out = ts::raw_exchange(
        gw.data(2s), "GET http://169.254.169.254" + gw.image_path("abs") +
                         " HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n");
    BOOST_TEST(out.rfind("HTTP/1.1 200 OK", 0) == 0u);
    BOOST_TEST(emu->requests_for("abs") == 1u);  // fetched from the configured upstream
}

BOOST_FIXTURE_TEST_CASE(errors_leak_no_upstream_detail_or_secret, fixture) {
    ts::write_file((dir.path() / "other-ca.pem").string(), ts::make_test_pki().ca_cert_pem);
    settings.upstream.ca_file = (dir.path() / "other-ca.pem").string();
    ts::gateway_runner gw(settings);
    const auto r = gw.get(gw.image_path("leak"));
    BOOST_TEST(r.status == 502u);
    for (const std::string& s :
         {std::string("127.0.0.1"), std::string("localhost"), std::to_string(emu->port()),
          emu->token(), std::string("certificate")}) {
        BOOST_TEST(!contains(r.body, s), s);
        for (const auto& [name, value] : r.headers) {
            BOOST_TEST(!contains(value, s), name);
        }
    }
}
