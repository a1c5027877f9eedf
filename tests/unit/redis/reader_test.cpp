// The reply reader against well-formed and hostile RESP: every reply type, nesting, and
// each cap (bulk, array header, depth, whole reply, unparsed buffer) refusing cleanly before
// the bytes or the announced sizes are allocated.
#include "gateway/redis/reader.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace redis = imagegate::redis;
namespace bdata = boost::unit_test::data;
using redis::error;
using redis::reply;

namespace {

/// Small caps so that each can be crossed with a few bytes.
constexpr redis::reply_limits small{
    .max_bulk_bytes = 16, .max_array_elements = 4, .max_depth = 2, .max_reply_bytes = 1024};
constexpr redis::reply_limits deep{
    .max_bulk_bytes = 16, .max_array_elements = 4, .max_depth = 7, .max_reply_bytes = 1024};
/// Room for the root and four element slots, not for four 16-byte strings on top.
constexpr redis::reply_limits tight{.max_bulk_bytes = 16,
                                    .max_array_elements = 4,
                                    .max_depth = 2,
                                    .max_reply_bytes = 5 * sizeof(reply) + 40};

struct reader_row {
    const char* name;
    std::string bytes;
    std::vector<reply> replies;    ///< complete replies expected before the end or the error
    std::optional<error> failure;  ///< the error expected after them, if any
    redis::reply_limits limits = small;
};

std::ostream& operator<<(std::ostream& os, const reader_row& r) { return os << r.name; }

std::string nested_arrays(int depth) {
    std::string s;
    for (int i = 0; i < depth; ++i) {
        s += "*1\r\n";
    }
    return s + ":1\r\n";
}

reply nested_reply(int depth) {
    reply r = reply::make_integer(1);
    for (int i = 0; i < depth; ++i) {
        r = reply::make_array({std::move(r)});
    }
    return r;
}

std::string bulk(std::size_t n) {
    return "$" + std::to_string(n) + "\r\n" + std::string(n, 'b') + "\r\n";
}

const reader_row reader_rows[] = {
    // Every reply type
    {"status", "+OK\r\n", {reply::make_status("OK")}, {}},
    {"error", "-NOSCRIPT gone\r\n", {reply::make_error("NOSCRIPT gone")}, {}},
    {"integer", ":42\r\n:-7\r\n", {reply::make_integer(42), reply::make_integer(-7)}, {}},
    {"bulk", "$3\r\nabc\r\n", {reply::make_string("abc")}, {}},
    {"binary bulk",
     std::string("$3\r\na\0b\r\n", 9),
     {reply::make_string(std::string("a\0b", 3))},
     {}},
    {"empty bulk", "$0\r\n\r\n", {reply::make_string("")}, {}},
    {"nil bulk", "$-1\r\n", {reply::make_nil()}, {}},
    {"nil array", "*-1\r\n", {reply::make_nil()}, {}},
    {"empty array", "*0\r\n", {reply::make_array({})}, {}},
    {"array",
     "*3\r\n:1\r\n$1\r\nx\r\n$-1\r\n",
     {reply::make_array({reply::make_integer(1), reply::make_string("x"), reply::make_nil()})},
     {}},
    {"depth 2 allowed", nested_arrays(2), {nested_reply(2)}, {}},
    {"bulk at the cap", bulk(16), {reply::make_string(std::string(16, 'b'))}, {}},
    {"4 elements at the cap",
     "*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n",
     {reply::make_array({reply::make_integer(1), reply::make_integer(2), reply::make_integer(3),
                         reply::make_integer(4)})},
     {}},
    {"subscribe push",
     "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\np\r\n",
     {reply::make_array(
         {reply::make_string("message"), reply::make_string("ch"), reply::make_string("p")})},
     {}},
    // Caps
    {"bulk over the cap", bulk(17), {}, error::bulk_too_large},
    {"status line over the cap", "+" + std::string(17, 's') + "\r\n", {}, error::bulk_too_large},
    {"error line over the cap", "-" + std::string(17, 'e') + "\r\n", {}, error::bulk_too_large},
    {"array header over the cap", "*5\r\n", {}, error::array_too_large},
    {"array header of 2^31-1 (no 16 GiB calloc)", "*2147483647\r\n", {}, error::array_too_large},
    {"nested array header over the cap", "*1\r\n*5\r\n", {}, error::array_too_large},
    {"depth 3 over a cap of 2", nested_arrays(3), {}, error::nesting_too_deep},
    {"depth 8 over hiredis' 7", nested_arrays(8), {}, error::nesting_too_deep, deep},
    {"depth 7 allowed when configured", nested_arrays(7), {nested_reply(7)}, {}, deep},
    {"strings add up over the reply cap",
     "*4\r\n" + bulk(16) + bulk(16) + bulk(16) + bulk(16),
     {},
     error::reply_too_large,
     tight},
    {"huge announced bulk never buffered beyond the cap",
     "$4000000000\r\n" + std::string(2000, 'x'),
     {},
     error::reply_too_large},
    {"bulk length past SIZE_MAX", "$99999999999999999999\r\n", {}, error::protocol_error},
    {"status line without CRLF", "+" + std::string(2000, 'a'), {}, error::reply_too_large},
    {"good reply, then a hostile one",
     ":1\r\n*2147483647\r\n",
     {reply::make_integer(1)},
     error::array_too_large},
    // Malformed RESP
    {"unknown type byte", "!oops\r\n", {}, error::protocol_error},
    {"RESP3 map", "%1\r\n", {}, error::protocol_error},
    {"bad integer", ":12a\r\n", {}, error::protocol_error},
    {"integer overflow", ":99999999999999999999\r\n", {}, error::protocol_error},
    {"bulk length -2", "$-2\r\n", {}, error::protocol_error},
    {"array length -2", "*-2\r\n", {}, error::protocol_error},
    {"bulk length not a number", "$x\r\n", {}, error::protocol_error},
};

struct outcome {
    std::vector<reply> replies;
    std::optional<error> failure;
    std::size_t max_buffered = 0;
};

/// Feeds `bytes` in `chunk`-byte reads, draining complete replies after each, as the
/// connection's read loop does.
outcome run(const std::string& bytes, const redis::reply_limits& limits, std::size_t chunk) {
    redis::reply_reader reader(limits);
    outcome out;
    for (std::size_t at = 0; at < bytes.size() && !out.failure; at += chunk) {
        auto fed = reader.feed(std::string_view(bytes).substr(at, chunk));
        while (fed) {
            auto next = reader.next();
            if (!next) {
                fed = next.error();
                break;
            }
            if (!*next) {
                break;
            }
            out.replies.push_back(std::move(**next));
        }
        out.max_buffered = std::max(out.max_buffered, reader.buffered());
        if (!fed) {
            out.failure = static_cast<error>(fed.error().value());
            BOOST_TEST((&fed.error().category() == &redis::redis_category()));
        }
    }
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(reader)

BOOST_DATA_TEST_CASE(parses, bdata::make(reader_rows) * bdata::make({1, 7, 4096}), row, chunk) {
    const auto got = run(row.bytes, row.limits, static_cast<std::size_t>(chunk));
    BOOST_TEST(got.replies == row.replies, boost::test_tools::per_element());
    BOOST_TEST(got.failure.has_value() == row.failure.has_value());
    if (got.failure && row.failure) {
        BOOST_TEST(*got.failure == *row.failure);
    }
    BOOST_TEST(got.max_buffered <= row.limits.max_reply_bytes + static_cast<std::size_t>(chunk));
}

BOOST_AUTO_TEST_CASE(an_endless_bulk_is_refused_within_the_cap) {
    // A server announcing 4 GB and streaming it in 16 KiB reads: refused once the buffer
    // passes max_reply_bytes, having held at most the cap plus one read.
    constexpr std::size_t cap = 1024 * 1024;
    constexpr std::size_t read = 16 * 1024;
    redis::reply_reader reader({.max_reply_bytes = cap});
    BOOST_REQUIRE(reader.feed("$4000000000\r\n"));
    const std::string chunk(read, 'x');
    std::size_t fed = 0;
    boost::system::error_code failure;
    while (!failure && fed < 8 * cap) {
        BOOST_REQUIRE(reader.feed(chunk));
        fed += read;
        auto next = reader.next();
        BOOST_TEST(reader.buffered() <= cap + read + 32);
        if (!next) {
            failure = next.error();
        } else {
            BOOST_TEST(!next->has_value());
        }
    }
    BOOST_TEST(failure == error::reply_too_large);
    BOOST_TEST(fed <= cap + read);
    // Unusable from now on: the connection must close.
    BOOST_TEST(!reader.feed("+OK\r\n"));
    BOOST_TEST(!reader.next());
}

BOOST_AUTO_TEST_CASE(many_pipelined_replies_in_one_read) {
    std::string bytes;
    for (int i = 0; i < 1000; ++i) {
        bytes += ":" + std::to_string(i) + "\r\n";
    }
    const auto got = run(bytes, small, bytes.size());
    BOOST_REQUIRE(!got.failure);
    BOOST_REQUIRE_EQUAL(got.replies.size(), 1000U);
    for (int i = 0; i < 1000; ++i) {
        BOOST_TEST(got.replies[static_cast<std::size_t>(i)].integer == i);
    }
}

BOOST_AUTO_TEST_CASE(the_cap_counts_one_reply_at_a_time) {
    // Ten replies of 600 bytes each pass a 1 KiB reply cap: the total is not a reply.
    redis::reply_limits limits{.max_bulk_bytes = 1000, .max_reply_bytes = 1024};
    std::string bytes;
    for (int i = 0; i < 10; ++i) {
        bytes += bulk(600);
    }
    const auto got = run(bytes, limits, 700);
    BOOST_TEST(!got.failure);
    BOOST_TEST(got.replies.size() == 10U);
}

BOOST_AUTO_TEST_SUITE_END()
