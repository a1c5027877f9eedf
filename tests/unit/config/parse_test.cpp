// Table-driven tests of the value parsers: durations, sizes, HOST:PORT and upstream URLs.
#include "config/parse.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <optional>
#include <ostream>
#include <string_view>
#include <vector>

namespace bdata = boost::unit_test::data;
using namespace imagegate::config;
using namespace std::chrono_literals;

namespace {

template <class T>
std::ostream& print_optional(std::ostream& os, const std::optional<T>& v) {
    if (!v) {
        return os << "(rejected)";
    }
    return os << *v;
}

struct duration_row {
    std::string_view text;
    std::optional<std::int64_t> millis;
};

std::ostream& operator<<(std::ostream& os, const duration_row& r) {
    os << '"' << r.text << "\" -> ";
    return print_optional(os, r.millis);
}

const std::vector<duration_row> duration_rows{
    // single units
    {"1500ms", 1500},
    {"5s", 5'000},
    {"5m", 300'000},
    {"24h", 86'400'000},
    {"0s", 0},
    {"0ms", 0},
    // compound, largest unit first
    {"1h30m", 5'400'000},
    {"1m30s", 90'000},
    {"1h1m1s1ms", 3'661'001},
    {"90m", 5'400'000},
    // near the limit of int64 milliseconds
    {"9223372036854775807ms", 9'223'372'036'854'775'807},
    // rejected: empty, bare numbers, unknown units
    {"", std::nullopt},
    {"5", std::nullopt},
    {"0", std::nullopt},
    {"s", std::nullopt},
    {"5d", std::nullopt},
    {"5S", std::nullopt},
    {"5sec", std::nullopt},
    {"5 s", std::nullopt},
    {" 5s", std::nullopt},
    {"5s ", std::nullopt},
    // rejected: signs and fractions
    {"-5s", std::nullopt},
    {"+5s", std::nullopt},
    {"1.5s", std::nullopt},
    // rejected: unit order and repeats
    {"30m1h", std::nullopt},
    {"1s1s", std::nullopt},
    {"1h30", std::nullopt},
    // rejected: overflow
    {"9223372036854775808ms", std::nullopt},
    {"2562047788016h", std::nullopt},
    {"99999999999999999999999s", std::nullopt},
    {"2562047788015h59m59s999ms", std::nullopt},
};

struct size_row {
    std::string_view text;
    std::optional<std::uint64_t> bytes;
};

std::ostream& operator<<(std::ostream& os, const size_row& r) {
    os << '"' << r.text << "\" -> ";
    return print_optional(os, r.bytes);
}

const std::vector<size_row> size_rows{
    // plain byte counts
    {"0", 0},
    {"1024", 1024},
    {"18446744073709551615", 18'446'744'073'709'551'615ULL},
    {"7B", 7},
    // binary units
    {"1KiB", 1024},
    {"256MiB", 256ULL << 20},
    {"1GiB", 1ULL << 30},
    {"2TiB", 2ULL << 40},
    // decimal units
    {"64KB", 64'000},
    {"1MB", 1'000'000},
    {"3GB", 3'000'000'000ULL},
    // rejected: empty, unit without number, unknown or mis-cased units
    {"", std::nullopt},
    {"MiB", std::nullopt},
    {"1kib", std::nullopt},
    {"1K", std::nullopt},
    {"1mb", std::nullopt},
    {"1 MiB", std::nullopt},
    {"1MiBs", std::nullopt},
    // rejected: signs and fractions
    {"-1", std::nullopt},
    {"+1", std::nullopt},
    {"1.5MiB", std::nullopt},
    // rejected: overflow
    {"18446744073709551616", std::nullopt},
    {"16777216TiB", std::nullopt},
    {"18446744073709552KB", std::nullopt},
};

struct host_port_row {
    std::string_view text;
    std::optional<host_port> parsed;
};

std::ostream& operator<<(std::ostream& os, const host_port_row& r) {
    os << '"' << r.text << "\" -> ";
    return print_optional(os, r.parsed);
}

const std::vector<host_port_row> host_port_rows{
    // IPv4 and names
    {"127.0.0.1:8080", host_port{"127.0.0.1", 8080}},
    {"0.0.0.0:65535", host_port{"0.0.0.0", 65535}},
    {"localhost:0", host_port{"localhost", 0}},
    {"cache-1.internal:443", host_port{"cache-1.internal", 443}},
    // IPv6 in brackets (returned without them)
    {"[::1]:8080", host_port{"::1", 8080}},
    {"[::]:0", host_port{"::", 0}},
    {"[::ffff:127.0.0.1]:80", host_port{"::ffff:127.0.0.1", 80}},
    // rejected: missing host or port
    {"", std::nullopt},
    {":8080", std::nullopt},
    {"localhost", std::nullopt},
    {"localhost:", std::nullopt},
    {"[::1]", std::nullopt},
    {"[]:80", std::nullopt},
    // rejected: bad ports
    {"localhost:65536", std::nullopt},
    {"localhost:-1", std::nullopt},
    {"localhost:+80", std::nullopt},
    {"localhost:80a", std::nullopt},
    {"localhost:000080", std::nullopt},
    // rejected: IPv6 without brackets, junk in the host
    {"::1:8080", std::nullopt},
    {"[::1:8080", std::nullopt},
    {"[::1]x:80", std::nullopt},
    {"[g::1]:80", std::nullopt},
    {"local host:80", std::nullopt},
    {"user@host:80", std::nullopt},
    {"http://host:80", std::nullopt},
};

struct url_row {
    std::string_view text;
    std::optional<upstream_url> parsed;
};

std::ostream& operator<<(std::ostream& os, const url_row& r) {
    os << '"' << r.text << "\" -> ";
    return print_optional(os, r.parsed);
}

const std::vector<url_row> url_rows{
    // https with default port
    {"https://api.cloudflare.com/client/v4",
     upstream_url{true, "api.cloudflare.com", 443, "/client/v4"}},
    {"https://api.cloudflare.com/client/v4/",
     upstream_url{true, "api.cloudflare.com", 443, "/client/v4"}},
    {"https://api.cloudflare.com", upstream_url{true, "api.cloudflare.com", 443, ""}},
    {"https://api.cloudflare.com/", upstream_url{true, "api.cloudflare.com", 443, ""}},
    {"HTTPS://api.cloudflare.com/x", upstream_url{true, "api.cloudflare.com", 443, "/x"}},
    // explicit ports, http
    {"https://127.0.0.1:8443/client/v4", upstream_url{true, "127.0.0.1", 8443, "/client/v4"}},
    {"http://localhost/client/v4", upstream_url{false, "localhost", 80, "/client/v4"}},
    {"http://localhost:8081", upstream_url{false, "localhost", 8081, ""}},
    // IPv6 literal
    {"https://[::1]:8443/v4", upstream_url{true, "::1", 8443, "/v4"}},
    {"https://[2001:db8::1]/v4", upstream_url{true, "2001:db8::1", 443, "/v4"}},
    // rejected: other schemes or none
    {"", std::nullopt},
    {"ftp://example.com/", std::nullopt},
    {"api.cloudflare.com/client/v4", std::nullopt},
    {"https:/api.cloudflare.com", std::nullopt},
    // rejected: empty host, bad port
    {"https://", std::nullopt},
    {"https:///client/v4", std::nullopt},
    {"https://:443/client/v4", std::nullopt},
    {"https://host:0/", std::nullopt},
    {"https://host:99999/", std::nullopt},
    {"https://host:/", std::nullopt},
    {"https://[::1/", std::nullopt},
    // rejected: user info, query, fragment, whitespace
    {"https://user:pass@api.cloudflare.com/client/v4", std::nullopt},
    {"https://user@api.cloudflare.com", std::nullopt},
    {"https://api.cloudflare.com/client/v4?x=1", std::nullopt},
    {"https://api.cloudflare.com/client/v4#top", std::nullopt},
    {"https://api.cloudflare.com/client v4", std::nullopt},
    {"https://api.cloudflare.com/client\r\nv4", std::nullopt},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(parse)

BOOST_DATA_TEST_CASE(duration_table, bdata::make(duration_rows), row) {
    const auto parsed = parse_duration(row.text);
    BOOST_TEST(parsed.has_value() == row.millis.has_value());
    if (parsed && row.millis) {
        BOOST_TEST(parsed->count() == *row.millis);
    }
}

BOOST_DATA_TEST_CASE(duration_round_trip, bdata::make(duration_rows), row) {
    if (const auto parsed = parse_duration(row.text)) {
        BOOST_TEST((parse_duration(format_duration(*parsed)) == parsed));
    }
}

BOOST_AUTO_TEST_CASE(format_duration_is_compact) {
    BOOST_TEST(format_duration(0ms) == "0s");
    BOOST_TEST(format_duration(5min) == "5m");
    BOOST_TEST(format_duration(90min) == "1h30m");
    BOOST_TEST(format_duration(1500ms) == "1s500ms");
    BOOST_TEST(format_duration(24h) == "24h");
}

BOOST_DATA_TEST_CASE(size_table, bdata::make(size_rows), row) {
    BOOST_TEST((parse_size(row.text) == row.bytes));
}

BOOST_DATA_TEST_CASE(size_round_trip, bdata::make(size_rows), row) {
    if (const auto parsed = parse_size(row.text)) {
        BOOST_TEST((parse_size(format_size(*parsed)) == parsed));
    }
}

BOOST_AUTO_TEST_CASE(format_size_picks_the_largest_exact_binary_unit) {
    BOOST_TEST(format_size(0) == "0");
    BOOST_TEST(format_size(1000) == "1000");
    BOOST_TEST(format_size(16 * kib) == "16KiB");
    BOOST_TEST(format_size(256 * mib) == "256MiB");
    BOOST_TEST(format_size(1536 * mib) == "1536MiB");
}

BOOST_DATA_TEST_CASE(host_port_table, bdata::make(host_port_rows), row) {
    BOOST_TEST((parse_host_port(row.text) == row.parsed));
}

BOOST_DATA_TEST_CASE(upstream_url_table, bdata::make(url_rows), row) {
    BOOST_TEST((parse_upstream_url(row.text) == row.parsed));
}

BOOST_AUTO_TEST_CASE(bool_and_count) {
    BOOST_TEST((parse_bool("true") == std::optional(true)));
    BOOST_TEST((parse_bool("1") == std::optional(true)));
    BOOST_TEST((parse_bool("false") == std::optional(false)));
    BOOST_TEST((parse_bool("0") == std::optional(false)));
    BOOST_TEST(!parse_bool("yes"));
    BOOST_TEST(!parse_bool("TRUE"));
    BOOST_TEST(!parse_bool(""));
    BOOST_TEST((parse_count("64") == std::optional<std::uint64_t>(64)));
    BOOST_TEST(!parse_count(""));
    BOOST_TEST(!parse_count("-1"));
    BOOST_TEST(!parse_count("1KiB"));
}

BOOST_AUTO_TEST_SUITE_END()
