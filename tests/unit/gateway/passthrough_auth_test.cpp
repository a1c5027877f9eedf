// Passthrough mode's pure parts: reading a caller's credential from its headers and the proof
// cache (credential digest → accounts the upstream accepted it for). Injected time, no
// sockets. The per-credential shields: tests/unit/shield/test_credential_shields.cpp.
#include "gateway/auth/authorizer.hpp"
#include "gateway/upstream/client.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace gw = imagegate::gateway;
namespace http = boost::beast::http;
using status = gw::caller_credential::status;
using namespace std::chrono_literals;

namespace {

struct credential_case {
    std::string name;
    std::vector<std::pair<std::string, std::string>> headers;  // inserted in order
    status expected;
    std::string bearer;  // expected forwarded values when ok
    std::string email;
    std::string key;
};
std::ostream& operator<<(std::ostream& os, const credential_case& c) { return os << c.name; }

const std::string ctl(1, '\x01');

const credential_case credential_cases[] = {
    // A Bearer token (RFC 6750 b64token), scheme in any case.
    {"bearer",
     {{"Authorization", "Bearer tok-EN_1.2~+/=="}},
     status::ok,
     "tok-EN_1.2~+/==",
     "",
     ""},
    {"lower-case scheme", {{"Authorization", "bearer abc"}}, status::ok, "abc", "", ""},
    {"extra spaces after scheme", {{"Authorization", "Bearer   abc"}}, status::ok, "abc", "", ""},
    // An email + key pair.
    {"email and key",
     {{"X-Auth-Email", "a@example.com"}, {"X-Auth-Key", "0123abcd"}},
     status::ok,
     "",
     "a@example.com",
     "0123abcd"},
    // Nothing at all: 401.
    {"no credential", {}, status::missing, "", "", ""},
    {"unrelated headers", {{"Cookie", "a=b"}}, status::missing, "", "", ""},
    // Malformed: 400, never sent upstream.
    {"two authorization headers",
     {{"Authorization", "Bearer abc"}, {"Authorization", "Bearer abc"}},
     status::malformed,
     "",
     "",
     ""},
    {"basic scheme", {{"Authorization", "Basic YTpi"}}, status::malformed, "", "", ""},
    {"no scheme", {{"Authorization", "abc"}}, status::malformed, "", "", ""},
    {"empty token", {{"Authorization", "Bearer "}}, status::malformed, "", "", ""},
    {"token with space", {{"Authorization", "Bearer a b"}}, status::malformed, "", "", ""},
    {"token with comma", {{"Authorization", "Bearer a,b"}}, status::malformed, "", "", ""},
    {"token with control byte",
     {{"Authorization", "Bearer a" + ctl + "b"}},
     status::malformed,
     "",
     "",
     ""},
    {"token with non-ascii",
     {{"Authorization", "Bearer a\xc3\xa9"}},
     status::malformed,
     "",
     "",
     ""},
    {"padding in the middle", {{"Authorization", "Bearer a=b"}}, status::malformed, "", "", ""},
    {"token too long",
     {{"Authorization", "Bearer " + std::string(1025, 'a')}},
     status::malformed,
     "",
     "",
     ""},
    {"email without key", {{"X-Auth-Email", "a@example.com"}}, status::malformed, "", "", ""},
    {"key without email", {{"X-Auth-Key", "0123"}}, status::malformed, "", "", ""},
    {"two keys",
     {{"X-Auth-Email", "a@example.com"}, {"X-Auth-Key", "1"}, {"X-Auth-Key", "2"}},
     status::malformed,
     "",
     "",
     ""},
    {"key with space",
     {{"X-Auth-Email", "a@example.com"}, {"X-Auth-Key", "a b"}},
     status::malformed,
     "",
     "",
     ""},
    {"email with control byte",
     {{"X-Auth-Email", "a" + ctl + "@x"}, {"X-Auth-Key", "k"}},
     status::malformed,
     "",
     "",
     ""},
    {"both kinds",
     {{"Authorization", "Bearer abc"}, {"X-Auth-Email", "a@x"}, {"X-Auth-Key", "k"}},
     status::malformed,
     "",
     "",
     ""},
};

}  // namespace

BOOST_DATA_TEST_CASE(caller_credentials_are_read_strictly,
                     boost::unit_test::data::make(credential_cases), c) {
    http::fields h;
    for (const auto& [name, value] : c.headers) {
        h.insert(name, value);
    }
    const auto got = gw::read_caller_credential(&h);
    BOOST_TEST(got.state == c.expected);
    BOOST_TEST(static_cast<bool>(got.cred) == (c.expected == status::ok));
    if (got.cred) {
        BOOST_TEST(got.cred->bearer == c.bearer);
        BOOST_TEST(got.cred->email == c.email);
        BOOST_TEST(got.cred->key == c.key);
    }
}

BOOST_AUTO_TEST_CASE(no_headers_is_missing) {
    BOOST_TEST(gw::read_caller_credential(nullptr).state == status::missing);
}

BOOST_AUTO_TEST_CASE(digests_tell_credentials_apart_and_hide_them) {
    const auto read = [](std::vector<std::pair<std::string, std::string>> hs) {
        http::fields h;
        for (const auto& [n, v] : hs) {
            h.insert(n, v);
        }
        return gw::read_caller_credential(&h).digest;
    };
    const auto a = read({{"Authorization", "Bearer abc"}});
    BOOST_TEST((a == read({{"Authorization", "bearer abc"}})));  // same credential
    BOOST_TEST((a != read({{"Authorization", "Bearer abd"}})));
    // A key pair whose key equals a token is another credential; the split point matters.
    BOOST_TEST((a != read({{"X-Auth-Email", "e@x"}, {"X-Auth-Key", "abc"}})));
    BOOST_TEST((read({{"X-Auth-Email", "ab@x"}, {"X-Auth-Key", "c"}}) !=
                read({{"X-Auth-Email", "a"}, {"X-Auth-Key", "b@xc"}})));
    // The digest is not the credential's bytes.
    const std::string token = "abc";
    BOOST_TEST(std::string(a.begin(), a.begin() + 3) != token);
}

// ---- proof cache -----------------------------------------------------------------------

namespace {

const auto t0 = std::chrono::steady_clock::time_point{} + 1000h;
const std::string acct_a = "023e105f4ecef8ad9ca31a8372d0c353";
const std::string acct_b = "11111111111111111111111111111111";

imagegate::credential_digest digest(unsigned char n) {
    imagegate::credential_digest d{};
    d[0] = n;
    d[31] = static_cast<unsigned char>(n ^ 0x5a);
    return d;
}

enum class op { prove, revoke, revoke_all };
struct proof_step {
    op what;
    unsigned char cred;
    std::string account;
    std::chrono::seconds at;
};
struct proof_case {
    std::string name;
    std::vector<proof_step> steps;
    // Then: is (cred, account) proven at `at`?
    unsigned char cred;
    std::string account;
    std::chrono::seconds at;
    bool expected;
};
std::ostream& operator<<(std::ostream& os, const proof_case& c) { return os << c.name; }

const proof_case proof_cases[] = {
    // No proof without an upstream acceptance.
    {"nothing proved", {}, 1, acct_a, 0s, false},
    {"proved", {{op::prove, 1, acct_a, 0s}}, 1, acct_a, 1s, true},
    // A proof is for one credential and one account.
    {"other credential", {{op::prove, 1, acct_a, 0s}}, 2, acct_a, 1s, false},
    {"other account", {{op::prove, 1, acct_a, 0s}}, 1, acct_b, 1s, false},
    // It lasts proof_ttl (60 s here), and a new acceptance renews it.
    {"just before expiry", {{op::prove, 1, acct_a, 0s}}, 1, acct_a, 59s, true},
    {"at expiry", {{op::prove, 1, acct_a, 0s}}, 1, acct_a, 60s, false},
    {"renewed", {{op::prove, 1, acct_a, 0s}, {op::prove, 1, acct_a, 50s}}, 1, acct_a, 100s, true},
    // A 403 drops the account's proof only; a 401 drops them all.
    {"revoked", {{op::prove, 1, acct_a, 0s}, {op::revoke, 1, acct_a, 1s}}, 1, acct_a, 2s, false},
    {"revoke keeps other accounts",
     {{op::prove, 1, acct_a, 0s}, {op::prove, 1, acct_b, 0s}, {op::revoke, 1, acct_a, 1s}},
     1,
     acct_b,
     2s,
     true},
    {"revoke_all",
     {{op::prove, 1, acct_a, 0s}, {op::prove, 1, acct_b, 0s}, {op::revoke_all, 1, "", 1s}},
     1,
     acct_b,
     2s,
     false},
    {"revoke of another credential",
     {{op::prove, 1, acct_a, 0s}, {op::revoke_all, 2, "", 1s}},
     1,
     acct_a,
     2s,
     true},
    // At most 3 credentials (here): proving a fourth drops the least recently proved.
    {"bound drops the oldest",
     {{op::prove, 1, acct_a, 0s},
      {op::prove, 2, acct_a, 1s},
      {op::prove, 3, acct_a, 2s},
      {op::prove, 4, acct_a, 3s}},
     1,
     acct_a,
     4s,
     false},
    {"bound keeps the newer",
     {{op::prove, 1, acct_a, 0s},
      {op::prove, 2, acct_a, 1s},
      {op::prove, 3, acct_a, 2s},
      {op::prove, 4, acct_a, 3s}},
     2,
     acct_a,
     4s,
     true},
    {"re-proving makes it newest",
     {{op::prove, 1, acct_a, 0s},
      {op::prove, 2, acct_a, 1s},
      {op::prove, 3, acct_a, 2s},
      {op::prove, 1, acct_a, 3s},
      {op::prove, 4, acct_a, 4s}},
     1,
     acct_a,
     5s,
     true},
};

}  // namespace

BOOST_DATA_TEST_CASE(proofs_are_per_credential_and_account,
                     boost::unit_test::data::make(proof_cases), c) {
    gw::proof_cache proofs(60s, 3);
    for (const auto& s : c.steps) {
        switch (s.what) {
        case op::prove: proofs.prove(digest(s.cred), s.account, t0 + s.at); break;
        case op::revoke: proofs.revoke(digest(s.cred), s.account); break;
        case op::revoke_all: proofs.revoke_all(digest(s.cred)); break;
        }
    }
    BOOST_TEST(proofs.is_proven(digest(c.cred), c.account, t0 + c.at) == c.expected);
    BOOST_TEST(proofs.size() <= 3u);
}

BOOST_AUTO_TEST_CASE(expired_credentials_are_swept_and_accounts_bounded) {
    gw::proof_cache proofs(60s, 100, 2);
    proofs.prove(digest(1), acct_a, t0);
    proofs.prove(digest(2), acct_a, t0 + 10s);
    BOOST_TEST(proofs.size() == 2u);
    proofs.prove(digest(3), acct_a, t0 + 65s);  // credential 1's proof has expired: swept
    BOOST_TEST(proofs.size() == 2u);
    // Two accounts per credential: a third drops the one expiring first.
    const std::string acct_c = "22222222222222222222222222222222";
    proofs.prove(digest(3), acct_b, t0 + 66s);
    proofs.prove(digest(3), acct_c, t0 + 67s);
    BOOST_TEST(!proofs.is_proven(digest(3), acct_a, t0 + 68s));
    BOOST_TEST(proofs.is_proven(digest(3), acct_b, t0 + 68s));
    BOOST_TEST(proofs.is_proven(digest(3), acct_c, t0 + 68s));
}
