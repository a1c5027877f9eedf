// authorizer::check_forward(): the token-mode grant matrix (client keys' methods, accounts and
// prefixes, anonymous loopback callers, unsafe paths), the refusal envelopes and reloads.
#include "gateway/auth/authorizer.hpp"
#include "gateway/http/envelope.hpp"
#include "gateway/runtime/reload.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cstdio>

namespace ig = imagegate;
namespace gw = imagegate::gateway;
namespace http = boost::beast::http;
using fv = gw::forward_verdict;

namespace {

std::string hex(const std::array<unsigned char, 32>& d) {
    std::string out;
    char buf[3];
    for (const auto b : d) {
        std::snprintf(buf, sizeof buf, "%02x", b);
        out += buf;
    }
    return out;
}

const std::string acct_a = "023e105f4ecef8ad9ca31a8372d0c353";
const std::string acct_b = "11111111111111111111111111111111";
const std::string in_a = "/accounts/" + acct_a;
const std::string in_b = "/accounts/" + acct_b;

std::vector<ig::config::client_key> keys() {
    return {
        {hex(gw::sha256("key-a")), {acct_a}, {"GET", "PATCH"}},
        {hex(gw::sha256("key-images")),
         {acct_a, acct_b},
         {"GET", "POST", "PATCH", "DELETE"},
         {in_a + "/images/", in_b + "/images/v2"}},
        {hex(gw::sha256("key-all")), {"*"}, {"DELETE", "HEAD"}},
        {hex(gw::sha256("key-read")), {"*"}},
    };
}

struct forward_case {
    std::string key;  // empty: no Authorization
    http::verb method;
    std::string path;
    bool loopback;
    fv expected;
    ig::errc error;  // errc{} when allowed
};
std::ostream& operator<<(std::ostream& os, const forward_case& c) {
    return os << '"' << c.key << "\" " << c.method << ' ' << c.path
              << (c.loopback ? " loopback" : "");
}

const auto none = ig::errc{};
const auto not_granted = ig::errc::forward_not_granted;
const auto bad_path = ig::errc::forward_path_forbidden;
const auto anon = ig::errc::forward_anonymous_not_granted;
const auto unauthorized = ig::errc::unauthorized;

// With client keys configured and forward.anonymous_methods = ["GET"].
const forward_case keyed_cases[] = {
    // A key forwards its methods, on its accounts only.
    {"key-a", http::verb::get, in_a + "/images/v2", false, fv::allowed, none},
    {"key-a", http::verb::patch, in_a + "/images/v1/x", false, fv::allowed, none},
    {"key-a", http::verb::get, in_a, false, fv::allowed, none},
    {"key-a", http::verb::delete_, in_a + "/images/v1/x", false, fv::not_granted, not_granted},
    {"key-a", http::verb::post, in_a + "/images/v1", true, fv::not_granted, not_granted},
    {"key-a", http::verb::get, in_b + "/images/v2", false, fv::forbidden_account, bad_path},
    {"key-a", http::verb::get, in_a + "0/images", false, fv::forbidden_account, bad_path},
    {"key-a", http::verb::get, "/zones", false, fv::forbidden_account, bad_path},
    {"key-a", http::verb::get, "/accounts", false, fv::forbidden_account, bad_path},
    // A path that a server would normalize into another account is never forwarded.
    {"key-a", http::verb::get, in_a + "/../" + acct_b + "/images", false, fv::forbidden_account,
     bad_path},
    {"key-a", http::verb::get, in_a + "/%2e%2e/" + acct_b, false, fv::forbidden_account, bad_path},
    {"key-a", http::verb::get, in_a + "/images/v1/a%2F..%2F..%2Fb", false, fv::forbidden_account,
     bad_path},
    // Prefixes narrow the accounts further.
    {"key-images", http::verb::post, in_a + "/images/v1", false, fv::allowed, none},
    {"key-images", http::verb::get, in_b + "/images/v2", false, fv::allowed, none},
    {"key-images", http::verb::get, in_b + "/images/v2?x", false, fv::forbidden_account, bad_path},
    {"key-images", http::verb::get, in_b + "/images/v1/x", false, fv::forbidden_account, bad_path},
    {"key-images", http::verb::get, in_a + "/stream", false, fv::forbidden_account, bad_path},
    {"key-images", http::verb::get, in_a + "/images", false, fv::forbidden_account, bad_path},
    // "*" forwards any path, its methods only.
    {"key-all", http::verb::delete_, "/zones/abc/purge_cache", false, fv::allowed, none},
    {"key-all", http::verb::head, in_b + "/images/v1/x", false, fv::allowed, none},
    {"key-all", http::verb::get, "/zones", false, fv::not_granted, not_granted},
    {"key-all", http::verb::options, "/zones", false, fv::not_granted, not_granted},
    {"key-all", http::verb::delete_, "/../user/tokens", false, fv::forbidden_account, bad_path},
    {"key-all", http::verb::delete_, "zones", false, fv::forbidden_account, bad_path},
    // A key without a forward grant only reads.
    {"key-read", http::verb::get, in_a + "/images/v2", true, fv::not_granted, not_granted},
    // Unknown keys are 401 even where anonymous callers would be let through.
    {"key-b", http::verb::get, in_a + "/images/v2", true, fv::unauthorized, unauthorized},
    // No key: forward.anonymous_methods from loopback only; else a key is needed (401).
    {"", http::verb::get, in_a + "/images/v2", true, fv::allowed, none},
    {"", http::verb::get, "/zones", true, fv::allowed, none},
    {"", http::verb::get, in_a + "/images/v2", false, fv::unauthorized, unauthorized},
    {"", http::verb::post, in_a + "/images/v1", true, fv::unauthorized, unauthorized},
    {"", http::verb::get, "/a/../b", true, fv::forbidden_account, bad_path},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(forward_grants)

BOOST_DATA_TEST_CASE(client_keys_grant_methods_and_paths, boost::unit_test::data::make(keyed_cases),
                     c) {
    const gw::authorizer auth(keys(), {"GET"});
    http::fields h;
    if (!c.key.empty()) {
        h.set(http::field::authorization, "Bearer " + c.key);
    }
    const auto d = auth.decide_forward(&h, c.method, c.path, c.loopback);
    BOOST_TEST(d.verdict == c.expected);
    BOOST_TEST(d.error == c.error);
    BOOST_TEST(auth.check_forward(&h, c.method, c.path, c.loopback) == c.expected);
    BOOST_TEST(d.message.empty() == (c.expected == fv::allowed));
}

BOOST_AUTO_TEST_CASE(without_keys_only_anonymous_methods_from_loopback) {
    const gw::authorizer auth({}, {"GET", "HEAD"});
    http::fields sdk;  // an SDK always sends a credential; without keys it is ignored
    sdk.set(http::field::authorization, "Bearer cloudflare-token-of-the-caller");
    BOOST_TEST(auth.check_forward(&sdk, http::verb::get, "/zones", true) == fv::allowed);
    BOOST_TEST(auth.check_forward(nullptr, http::verb::head, "/zones", true) == fv::allowed);

    auto d = auth.decide_forward(&sdk, http::verb::get, "/zones", false);
    BOOST_TEST(d.verdict == fv::not_granted);
    BOOST_TEST(d.error == ig::errc::forward_anonymous_not_granted);
    BOOST_TEST(d.message.find("loopback callers only") != std::string::npos, d.message);

    d = auth.decide_forward(&sdk, http::verb::patch, "/zones", true);
    BOOST_TEST(d.verdict == fv::not_granted);
    BOOST_TEST(d.message.find("Forwarding PATCH is not granted") != std::string::npos, d.message);
    BOOST_TEST(d.message.find("forward.anonymous_methods") != std::string::npos, d.message);

    const gw::authorizer closed({});
    BOOST_TEST(closed.check_forward(nullptr, http::verb::get, "/zones", true) == fv::not_granted);
}

BOOST_AUTO_TEST_CASE(refusals_name_the_method_and_the_setting) {
    const gw::authorizer auth(keys());
    http::fields h;
    h.set(http::field::authorization, "Bearer key-a");
    const auto d = auth.decide_forward(&h, http::verb::delete_, in_a + "/images/v1/x", false);
    BOOST_TEST(d.message ==
               "Forwarding DELETE is not granted to this client key: add it to "
               "auth.client_keys[].forward");
    const auto body = gw::error_envelope(ig::to_envelope_code(d.error), d.message);
    BOOST_TEST(body.find(R"({"code":99414,"message":"Forwarding DELETE)") != std::string::npos,
               body);
    // A method beast does not know is not echoed back.
    const auto odd = auth.decide_forward(&h, http::verb::unknown, in_a, false);
    BOOST_TEST(odd.message.find("Forwarding this method") == 0u, odd.message);
}

BOOST_AUTO_TEST_CASE(refusal_codes_are_403_and_name_settings) {
    for (const auto e : {ig::errc::forward_not_granted, ig::errc::forward_path_forbidden,
                         ig::errc::forward_anonymous_not_granted}) {
        BOOST_TEST(ig::to_http_status(e) == 403u);
        BOOST_TEST(!ig::retry_may_help(e));
        BOOST_TEST(ig::to_client_message(e).find("auth.client_keys[]") != std::string_view::npos);
    }
    BOOST_TEST(ig::to_envelope_code(ig::errc::forward_not_granted) == 99414u);
    BOOST_TEST(ig::to_envelope_code(ig::errc::forward_path_forbidden) == 99415u);
    BOOST_TEST(ig::to_envelope_code(ig::errc::forward_anonymous_not_granted) == 99416u);
}

BOOST_AUTO_TEST_CASE(a_reload_changes_grants_for_the_next_check) {
    gw::authorizer auth({{hex(gw::sha256("key-a")), {acct_a}}});
    http::fields h;
    h.set(http::field::authorization, "Bearer key-a");
    const std::string path = in_a + "/images/v1/x";
    BOOST_TEST(auth.check_forward(&h, http::verb::patch, path, false) == fv::not_granted);
    BOOST_TEST(auth.check_forward(nullptr, http::verb::get, path, true) == fv::unauthorized);

    auth.replace_keys({{hex(gw::sha256("key-a")), {acct_a}, {"PATCH"}}}, {"GET"});
    BOOST_TEST(auth.check_forward(&h, http::verb::patch, path, false) == fv::allowed);
    BOOST_TEST(auth.check_forward(nullptr, http::verb::get, path, true) == fv::allowed);
    // Reads are unchanged by forward grants.
    BOOST_TEST(auth.check(&h, acct_a) == gw::authorizer::verdict::allowed);

    auth.replace_keys({}, {});
    BOOST_TEST(auth.check_forward(&h, http::verb::patch, path, true) == fv::not_granted);
}

BOOST_AUTO_TEST_CASE(anonymous_grants_reload_live_body_limits_need_a_restart) {
    BOOST_TEST(gw::is_live_key("forward.anonymous_methods", false));
    BOOST_TEST(gw::is_live_key("auth.client_keys", false));
    BOOST_TEST(!gw::is_live_key("forward.max_body_bytes", false));
    BOOST_TEST(!gw::is_live_key("forward.body_timeout", false));
}

BOOST_AUTO_TEST_CASE(method_sets) {
    BOOST_TEST(gw::forward_method_set({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}) == 0x3fu);
    BOOST_TEST(gw::forward_method_set({"OPTIONS", "get"}) == 0u);
    BOOST_TEST(gw::forward_method_bit(http::verb::connect) == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
