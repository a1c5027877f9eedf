// redis:// and rediss:// URLs as a table: what each says, and why the refused ones are
// refused (a password in the URL above all).
#include "gateway/redis/options.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <optional>
#include <ostream>
#include <string>

namespace redis = imagegate::redis;
namespace bdata = boost::unit_test::data;

namespace {

struct url_row {
    const char* text;
    std::optional<redis::redis_url> expected;  ///< empty: refused
    const char* reason = "";                   ///< a word the refusal must contain
};

std::ostream& operator<<(std::ostream& os, const url_row& r) { return os << r.text; }

redis::redis_url url(bool tls, std::string host, std::uint16_t port, std::uint32_t db = 0,
                     std::string user = {}) {
    return {tls, std::move(host), port, db, std::move(user)};
}

const url_row url_rows[] = {
    // The plain forms and their defaults
    {"redis://localhost", url(false, "localhost", 6379)},
    {"redis://localhost/", url(false, "localhost", 6379)},
    {"redis://127.0.0.1:6380", url(false, "127.0.0.1", 6380)},
    {"redis://cache.internal:7000/3", url(false, "cache.internal", 7000, 3)},
    {"REDIS://Host", url(false, "Host", 6379)},
    {"rediss://redis.example.com", url(true, "redis.example.com", 6379)},
    {"rediss://redis.example.com:6380/15", url(true, "redis.example.com", 6380, 15)},
    {"redis://[::1]", url(false, "::1", 6379)},
    {"redis://[::1]:6390/2", url(false, "::1", 6390, 2)},
    // ACL user, percent-decoded
    {"redis://imagegate@localhost", url(false, "localhost", 6379, 0, "imagegate")},
    {"rediss://fleet-rw@10.0.0.5:6379/1", url(true, "10.0.0.5", 6379, 1, "fleet-rw")},
    {"redis://us%40er@localhost", url(false, "localhost", 6379, 0, "us@er")},
    // A password never comes from a URL
    {"redis://user:secret@localhost", std::nullopt, "password"},
    {"redis://:secret@localhost", std::nullopt, "password"},
    {"rediss://user:@localhost", std::nullopt, "password"},
    // Bad user names
    {"redis://@localhost", std::nullopt, "empty user"},
    {"redis://us%4@localhost", std::nullopt, "escape"},
    {"redis://us%0aer@localhost", std::nullopt, "control"},
    {"redis://us/er@localhost", std::nullopt, "database"},
    // Schemes, hosts, ports, paths
    {"http://localhost", std::nullopt, "scheme"},
    {"unix:///run/redis.sock", std::nullopt, "scheme"},
    {"redis:/localhost", std::nullopt, "scheme"},
    {"", std::nullopt, "scheme"},
    {"redis://", std::nullopt, "host"},
    {"redis://:6379", std::nullopt, "host"},
    {"redis://localhost:0", std::nullopt, "port 0"},
    {"redis://localhost:65536", std::nullopt, "host"},
    {"redis://localhost:port", std::nullopt, "host"},
    {"redis://::1", std::nullopt, "host"},
    {"redis://[::1", std::nullopt, "host"},
    {"redis://local host", std::nullopt, "space"},
    {"redis://localhost/abc", std::nullopt, "database"},
    {"redis://localhost/-1", std::nullopt, "database"},
    {"redis://localhost/1/2", std::nullopt, "database"},
    {"redis://localhost/99999999999", std::nullopt, "database"},
    {"redis://localhost?db=1", std::nullopt, "query"},
    {"redis://localhost#x", std::nullopt, "fragment"},
    {"redis://localhost\r\n", std::nullopt, "control"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(url)

BOOST_DATA_TEST_CASE(parses, bdata::make(url_rows), row) {
    const auto parsed = redis::parse_url(row.text);
    if (row.expected) {
        BOOST_REQUIRE_MESSAGE(parsed.has_value(),
                              (parsed.has_error() ? parsed.error().reason : std::string()));
        BOOST_TEST(*parsed == *row.expected);
    } else {
        BOOST_REQUIRE(parsed.has_error());
        BOOST_TEST(parsed.error().reason.find(row.reason) != std::string::npos,
                   parsed.error().reason << " should mention '" << row.reason << "'");
    }
}

BOOST_AUTO_TEST_CASE(refusal_never_echoes_the_password) {
    const auto parsed = redis::parse_url("redis://user:hunter2@localhost");
    BOOST_REQUIRE(parsed.has_error());
    BOOST_TEST(parsed.error().reason.find("hunter2") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(apply_copies_every_field) {
    redis::connection_options o;
    o.password = "kept";
    redis::apply_url(redis::parse_url("rediss://u@h.example:7001/4").value(), o);
    BOOST_TEST(o.tls);
    BOOST_TEST(o.host == "h.example");
    BOOST_TEST(o.port == 7001);
    BOOST_TEST(o.db == 4U);
    BOOST_TEST(o.user == "u");
    BOOST_TEST(o.password == "kept");
}

BOOST_AUTO_TEST_SUITE_END()
