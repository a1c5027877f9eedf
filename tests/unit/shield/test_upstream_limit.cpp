// shield::upstream_limit and its parsers: Retry-After, Ratelimit and Ratelimit-Policy values
// (valid, lenient, garbage), the low-remaining pause, 429 pauses and their counters.
#include "gateway/shield/upstream_limit.hpp"

#include "print.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

namespace imagegate::shield {
namespace {

namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;
using namespace std::string_view_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);

struct retry_after_case {
    std::string_view value;
    duration expected;
    duration fallback = default_pause;
    duration cap = pause_cap;
};

std::ostream& operator<<(std::ostream& os, const retry_after_case& c) {
    return os << "'" << c.value << "' (fallback " << c.fallback << ", cap " << c.cap << ") -> "
              << c.expected;
}

const retry_after_case retry_after_cases[] = {
    // delta-seconds
    {"120", 120s},
    {"1", 1s},
    {"3600", 1h},
    {"007", 7s},
    // lenient: surrounding whitespace
    {"  30 ", 30s},
    {"\t30", 30s},
    // 0 still pauses for a second: a 429 is never followed by an immediate retry
    {"0", 1s},
    // capped at one hour, including numbers too large for any integer type
    {"3601", 1h},
    {"86400", 1h},
    {"99999999999999999999999999999999", 1h},
    // a caller's own fallback and cap
    {"10", 5s, 2min, 5s},
    {"", 2min, 2min, 5s},
    // missing or not delta-seconds: the default 5 minutes
    {"", 5min},
    {"   ", 5min},
    {"-5", 5min},
    {"+5", 5min},
    {"1.5", 5min},
    {"12abc", 5min},
    {"1 2", 5min},
    {"abc", 5min},
    {"\x00\xff"sv, 5min},
    // an HTTP-date (RFC 9110 §5.6.7) is deliberately treated as the default
    {"Wed, 21 Oct 2015 07:28:00 GMT", 5min},
};

BOOST_DATA_TEST_CASE(retry_after, bdata::make(retry_after_cases), c) {
    BOOST_TEST(parse_retry_after(c.value, c.fallback, c.cap) == c.expected);
}

/// A header value and what its parser must make of it.
template <class Parsed>
struct parse_case {
    std::string_view value;
    std::optional<Parsed> expected;
};

template <class Parsed>
std::ostream& operator<<(std::ostream& os, const parse_case<Parsed>& c) {
    os << "'" << c.value << "' -> ";
    return c.expected ? os << *c.expected : os << "nullopt";
}

using ratelimit_case = parse_case<ratelimit_state>;
using policy_case = parse_case<ratelimit_policy>;

ratelimit_state rl(std::uint64_t r, std::int64_t t) { return {r, std::chrono::seconds(t)}; }

const ratelimit_case ratelimit_cases[] = {
    // valid: what Cloudflare sends
    {R"("default";r=50;t=30)", rl(50, 30)},
    {R"("default";r=0;t=300)", rl(0, 300)},
    {R"("default";r=1200;t=0)", rl(1200, 0)},
    {R"("default";r=999999999999999;t=1)", rl(999'999'999'999'999, 1)},
    // lenient: whitespace, order, case, quotes, names, unknown and empty parameters
    {R"( "default" ; r = 50 ; t = 30 )", rl(50, 30)},
    {"\"default\";\tr=50;\tt=30", rl(50, 30)},
    {R"("default";t=30;r=50)", rl(50, 30)},
    {R"("default";R=50;T=30)", rl(50, 30)},
    {R"(default;r=50;t=30)", rl(50, 30)},
    {R"(r=50;t=30)", rl(50, 30)},
    {R"(;r=50;t=30)", rl(50, 30)},
    {R"("default";r="50";t="30")", rl(50, 30)},
    {R"("default";r=50;t=30;pk=:cHJvY2VlZCB3aXRoIGNhdXRpb24=:)", rl(50, 30)},
    {R"("default";pk;r=50;x="a;b,c";t=30)", rl(50, 30)},
    {R"("def;a,ult";r=50;t=30)", rl(50, 30)},
    {R"("default";r=50;t=30;)", rl(50, 30)},
    {R"("default";r=1;r=50;t=30)", rl(50, 30)},  // the last duplicate wins
    // several policies: the fewest remaining, then the longest reset
    {R"("default";r=50;t=30, "hourly";r=2;t=3000)", rl(2, 3000)},
    {R"("a";r=5;t=10, "b";r=5;t=20)", rl(5, 20)},
    {R"("a";r=5;t=10, garbage, "b";r=x;t=1)", rl(5, 10)},
    {R"(, "a";r=5;t=10,)", rl(5, 10)},
    // garbage: rejected, never a crash
    {"", std::nullopt},
    {"   ", std::nullopt},
    {"garbage", std::nullopt},
    {R"("default")", std::nullopt},
    {R"("default";r=50)", std::nullopt},
    {R"("default";t=30)", std::nullopt},
    {R"("default";r=-1;t=30)", std::nullopt},
    {R"("default";r=abc;t=30)", std::nullopt},
    {R"("default";r=1.5;t=30)", std::nullopt},
    {R"("default";r=;t=30)", std::nullopt},
    {R"("default";r;t=30)", std::nullopt},
    {R"("default";r=1000000000000000;t=1)", std::nullopt},  // 16 digits
    {R"("default";r=50 t=30)", std::nullopt},
    {R"("default;r=50;t=30)", std::nullopt},  // unterminated string
    {R"("a";r=5;t=10, "b)", std::nullopt},    // one broken string spoils the header
    {R"("default";r=5\";t=10)", std::nullopt},
    {";;;,,,===", std::nullopt},
    {"\x00\x01\xff\xfe"sv, std::nullopt},
    {"limit=100, remaining=50, reset=5", std::nullopt},  // the older dictionary form
};

BOOST_DATA_TEST_CASE(ratelimit_header, bdata::make(ratelimit_cases), c) {
    BOOST_TEST((parse_ratelimit(c.value) == c.expected));
}

ratelimit_policy pol(std::uint64_t q, std::int64_t w) { return {q, std::chrono::seconds(w)}; }

const policy_case policy_cases[] = {
    // valid
    {R"("burst";q=1200;w=300)", pol(1200, 300)},
    // lenient
    {R"( burst ; w = 300 ; Q = 1200 )", pol(1200, 300)},
    {R"("burst";q=1200)", pol(1200, 0)},
    {R"(q=1200;w=300;qu="request")", pol(1200, 300)},
    // several: the largest quota
    {R"("burst";q=200;w=1, "default";q=1200;w=300)", pol(1200, 300)},
    // garbage
    {"", std::nullopt},
    {R"("burst")", std::nullopt},
    {R"("burst";q=0;w=300)", std::nullopt},
    {R"("burst";q=x;w=300)", std::nullopt},
    {R"("burst";q=1200;w=-300)", std::nullopt},
    {R"("burst;q=1200)", std::nullopt},
};

BOOST_DATA_TEST_CASE(ratelimit_policy_header, bdata::make(policy_cases), c) {
    BOOST_TEST((parse_ratelimit_policy(c.value) == c.expected));
}

struct observe_case {
    std::string_view name;
    std::string_view ratelimit;
    std::string_view policy;
    ratelimit_verdict expected;
    std::optional<duration> blocked;
};

std::ostream& operator<<(std::ostream& os, const observe_case& c) {
    return os << c.name << ": '" << c.ratelimit << "' / '" << c.policy << "' -> " << c.expected;
}

using v = ratelimit_verdict;
constexpr std::optional<duration> open;  // not paused
constexpr std::string_view q100 = R"("burst";q=100;w=60)";

const observe_case observe_cases[] = {
    // default quota 1200: margin max(10, 5% = 60) = 60
    {"plenty", R"("default";r=500;t=100)", "", v::ok, open},
    {"just above", R"("default";r=61;t=100)", "", v::ok, open},
    {"at the margin", R"("default";r=60;t=100)", "", v::paused, 100s},
    {"exhausted", R"("default";r=0;t=300)", "", v::paused, 300s},
    {"resets now", R"("default";r=0;t=0)", "", v::ok, open},
    {"absurd reset capped", R"("default";r=0;t=999999999999999)", "", v::paused, 1h},
    // the response's own policy sets the margin
    {"small quota: floor 10", R"("default";r=11;t=5)", q100, v::ok, open},
    {"small quota: at floor", R"("default";r=10;t=5)", q100, v::paused, 5s},
    {"large quota: 5%", R"("default";r=500;t=5)", R"("burst";q=10000;w=60)", v::paused, 5s},
    {"5% rounds up", R"("default";r=51;t=5)", R"("burst";q=1001;w=60)", v::paused, 5s},
    {"bad policy keeps the default", R"("default";r=61;t=5)", R"(q=zz)", v::ok, open},
    // nothing to learn
    {"absent", "", "", v::absent, open},
    {"blank", "  ", "", v::absent, open},
    {"garbage", "r=lots", "", v::invalid, open},
};

BOOST_DATA_TEST_CASE(observe, bdata::make(observe_cases), c) {
    upstream_limit limit;
    BOOST_TEST(limit.observe_ratelimit(t0, c.ratelimit, c.policy) == c.expected);
    BOOST_TEST(limit.blocked_for(t0) == c.blocked);
    BOOST_TEST(limit.is_paused(t0) == c.blocked.has_value());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(upstream_limit_state)

BOOST_AUTO_TEST_CASE(pause_after_429) {
    upstream_limit limit;
    BOOST_TEST(!limit.is_paused(t0));
    limit.pause_until(t0, parse_retry_after("30"));
    BOOST_TEST(limit.blocked_for(t0) == std::optional<duration>(30s));
    BOOST_TEST(limit.blocked_for(t0 + 10s) == std::optional<duration>(20s));
    BOOST_TEST(limit.blocked_for(t0 + 30s - 1ns) == std::optional<duration>(1ns));
    // the pause ends at t0 + 30 s: calls at that instant may go
    BOOST_TEST(limit.blocked_for(t0 + 30s) == std::optional<duration>());
    BOOST_TEST(!limit.is_paused(t0 + 30s));
    BOOST_TEST(limit.counters() ==
               (upstream_limit_counters{.upstream_429s = 1, .pauses = 1, .seconds_paused = 30}));
}

BOOST_AUTO_TEST_CASE(pauses_only_extend_and_count_once) {
    upstream_limit limit;
    limit.pause_until(t0, 30s);
    // a shorter pause inside a running one changes nothing but the 429 count
    limit.pause_until(t0 + 5s, 10s);
    BOOST_TEST(limit.blocked_for(t0 + 5s) == std::optional<duration>(25s));
    // plenty remaining does not lift it either
    const auto verdict = limit.observe_ratelimit(t0 + 6s, R"("default";r=1000;t=1)");
    BOOST_TEST(verdict == ratelimit_verdict::ok);
    BOOST_TEST(limit.is_paused(t0 + 6s));
    // a longer one extends it; only the extension adds to seconds_paused
    limit.pause_until(t0 + 10s, 60s);
    BOOST_TEST(limit.blocked_for(t0 + 10s) == std::optional<duration>(60s));
    BOOST_TEST(limit.counters() ==
               (upstream_limit_counters{.upstream_429s = 3, .pauses = 1, .seconds_paused = 70}));
    // after it ends, a low Ratelimit starts a second pause
    BOOST_TEST(limit.observe_ratelimit(t0 + 100s, R"("default";r=0;t=20)") ==
               ratelimit_verdict::paused);
    BOOST_TEST(limit.blocked_for(t0 + 100s) == std::optional<duration>(20s));
    BOOST_TEST(limit.counters() ==
               (upstream_limit_counters{.upstream_429s = 3, .pauses = 2, .seconds_paused = 90}));
}

BOOST_AUTO_TEST_CASE(pause_is_clamped) {
    upstream_limit limit({.max_pause = 10min});
    limit.pause_until(t0, 24h);
    BOOST_TEST(limit.blocked_for(t0) == std::optional<duration>(10min));
    upstream_limit zero;
    zero.pause_until(t0, -5s);  // a 429 is counted even when it imposes no wait
    BOOST_TEST(!zero.is_paused(t0));
    BOOST_TEST(zero.counters() == (upstream_limit_counters{.upstream_429s = 1}));
}

BOOST_AUTO_TEST_CASE(policy_is_remembered) {
    upstream_limit limit;
    BOOST_TEST(limit.margin() == 60u);
    BOOST_TEST(limit.observe_ratelimit(t0, R"("default";r=500;t=5)", R"("burst";q=100;w=60)") ==
               ratelimit_verdict::ok);
    BOOST_TEST(limit.margin() == 10u);
    // later responses without a policy keep the quota learnt
    BOOST_TEST(limit.observe_ratelimit(t0, R"("default";r=11;t=5)") == ratelimit_verdict::ok);
    BOOST_TEST(limit.observe_ratelimit(t0, R"("default";r=10;t=5)") == ratelimit_verdict::paused);
    // an unparseable policy neither changes the quota nor counts as a Ratelimit verdict
    BOOST_TEST(limit.observe_ratelimit(t0, "", "q=") == ratelimit_verdict::absent);
    BOOST_TEST(limit.margin() == 10u);
    BOOST_TEST(limit.counters().invalid_headers == 1u);
}

BOOST_AUTO_TEST_CASE(invalid_headers_are_counted) {
    upstream_limit limit;
    BOOST_TEST(limit.observe_ratelimit(t0, "nonsense") == ratelimit_verdict::invalid);
    BOOST_TEST(limit.observe_ratelimit(t0, "nonsense", "nonsense") == ratelimit_verdict::invalid);
    BOOST_TEST(limit.counters() == (upstream_limit_counters{.invalid_headers = 3}));
    BOOST_TEST(!limit.is_paused(t0));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::shield
