#include "gateway/auth/authorizer.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cstdio>

namespace gw = imagegate::gateway;
namespace http = boost::beast::http;
using verdict = gw::authorizer::verdict;

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

gw::authorizer make() {
    return gw::authorizer(
        {{hex(gw::sha256("key-for-a")), {acct_a}}, {hex(gw::sha256("key-for-all")), {"*"}}});
}

struct auth_case {
    std::string authorization;  // empty: no header
    std::string account;
    verdict expected;
};
std::ostream& operator<<(std::ostream& os, const auth_case& c) {
    return os << '"' << c.authorization << "\" " << c.account;
}

const auth_case cases[] = {
    // A key reads its own accounts only.
    {"Bearer key-for-a", acct_a, verdict::allowed},
    {"Bearer key-for-a", acct_b, verdict::forbidden},
    {"bearer key-for-a", acct_a, verdict::allowed},
    {"Bearer   key-for-a  ", acct_a, verdict::allowed},
    // "*" reads every account.
    {"Bearer key-for-all", acct_b, verdict::allowed},
    // Missing, unknown, malformed.
    {"", acct_a, verdict::unauthorized},
    {"Bearer ", acct_a, verdict::unauthorized},
    {"Bearer key-for-b", acct_a, verdict::unauthorized},
    {"Bearer key-for-", acct_a, verdict::unauthorized},
    {"Basic a2V5LWZvci1h", acct_a, verdict::unauthorized},
    {"key-for-a", acct_a, verdict::unauthorized},
};

}  // namespace

BOOST_DATA_TEST_CASE(client_keys_decide_access, boost::unit_test::data::make(cases), c) {
    const auto auth = make();
    http::fields h;
    if (!c.authorization.empty()) {
        h.set(http::field::authorization, c.authorization);
    }
    BOOST_TEST(auth.check(&h, c.account) == c.expected);
}

BOOST_AUTO_TEST_CASE(two_authorization_headers_are_refused) {
    const auto auth = make();
    http::fields h;
    h.insert(http::field::authorization, "Bearer key-for-a");
    h.insert(http::field::authorization, "Bearer key-for-a");
    BOOST_TEST(auth.check(&h, acct_a) == verdict::unauthorized);
}

BOOST_AUTO_TEST_CASE(without_keys_everyone_is_allowed) {
    const gw::authorizer none({});
    http::fields h;
    h.set(http::field::authorization, "Bearer whatever-an-sdk-sends");
    BOOST_TEST(none.check(&h, acct_a) == verdict::allowed);
    BOOST_TEST(none.check(nullptr, acct_a) == verdict::allowed);
}

BOOST_AUTO_TEST_CASE(admin_token_check) {
    http::fields h;
    h.set(http::field::authorization, "Bearer admin-token-123");
    BOOST_TEST(gw::is_admin(&h, "admin-token-123"));
    BOOST_TEST(!gw::is_admin(&h, "admin-token-1234"));
    BOOST_TEST(!gw::is_admin(&h, ""));
    BOOST_TEST(!gw::is_admin(nullptr, "admin-token-123"));
}
