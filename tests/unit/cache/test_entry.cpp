// cache::entry: rendered bytes, accounted size, freshness classification, Age and ttl.
#include "cache/entry.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <ostream>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace imagegate::cache {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const time_point t0 = time_point{} + std::chrono::hours(1000);

std::shared_ptr<const entry> make(clock::duration ttl, clock::duration swr, clock::duration sie,
                                  std::string_view body = R"({"success":true})") {
    return make_entry({.key = key("acct", "img"),
                       .body = body,
                       .stored_at = t0,
                       .ttl = ttl,
                       .swr = swr,
                       .sie = sie});
}

struct classify_case {
    std::string_view name;
    milliseconds ttl, swr, sie, elapsed;
    freshness expected;
};

std::ostream& operator<<(std::ostream& os, const classify_case& c) {
    return os << c.name << " {ttl=" << c.ttl.count() << "ms swr=" << c.swr.count()
              << "ms sie=" << c.sie.count() << "ms elapsed=" << c.elapsed.count() << "ms} -> "
              << c.expected;
}

constexpr milliseconds s(long long n) { return seconds(n); }
constexpr milliseconds ms(long long n) { return milliseconds(n); }

const classify_case classify_cases[] = {
    // fresh: [stored_at, fresh_until)
    {"just stored", s(60), s(0), s(0), s(0), freshness::fresh},
    {"last fresh millisecond", s(60), s(30), s(120), ms(59'999), freshness::fresh},
    {"clock before stored_at", s(60), s(0), s(0), s(-1), freshness::fresh},
    // exactly at fresh_until the entry is stale (RFC 9111 §4.2: fresh while lifetime > age)
    {"at fresh_until, no windows", s(60), s(0), s(0), s(60), freshness::expired},
    {"at fresh_until, swr", s(60), s(30), s(0), s(60), freshness::stale_revalidate},
    {"at fresh_until, sie only", s(60), s(0), s(30), s(60), freshness::stale_if_error},
    {"at fresh_until, both", s(60), s(30), s(120), s(60), freshness::stale_revalidate},
    // stale-while-revalidate: [fresh_until, fresh_until + swr)
    {"inside swr", s(60), s(30), s(0), s(75), freshness::stale_revalidate},
    {"last swr millisecond", s(60), s(30), s(0), ms(89'999), freshness::stale_revalidate},
    {"at swr end, no sie", s(60), s(30), s(0), s(90), freshness::expired},
    // stale-if-error: from the end of swr to fresh_until + sie
    {"at swr end, sie longer", s(60), s(30), s(120), s(90), freshness::stale_if_error},
    {"last sie millisecond", s(60), s(30), s(120), ms(179'999), freshness::stale_if_error},
    {"at sie end", s(60), s(30), s(120), s(180), freshness::expired},
    {"long after", s(60), s(30), s(120), s(86'400), freshness::expired},
    // sie shorter than swr: the swr window decides, sie never ends before it
    {"sie < swr, inside sie", s(60), s(30), s(10), s(65), freshness::stale_revalidate},
    {"sie < swr, past sie", s(60), s(30), s(10), s(75), freshness::stale_revalidate},
    {"sie < swr, at swr end", s(60), s(30), s(10), s(90), freshness::expired},
    // zero and negative durations (negative counts as zero)
    {"zero ttl", s(0), s(0), s(0), s(0), freshness::expired},
    {"zero ttl, swr", s(0), s(10), s(0), s(0), freshness::stale_revalidate},
    {"negative ttl", s(-5), s(0), s(0), s(0), freshness::expired},
    {"negative swr", s(60), s(-30), s(0), s(60), freshness::expired},
};

struct age_case {
    std::string_view name;
    milliseconds ttl, elapsed;
    long long age, ttl_remaining;
};

std::ostream& operator<<(std::ostream& os, const age_case& c) {
    return os << c.name << " {ttl=" << c.ttl.count() << "ms elapsed=" << c.elapsed.count()
              << "ms} -> age " << c.age << " ttl " << c.ttl_remaining;
}

const age_case age_cases[] = {
    // fresh: Age rounds down, ttl = lifetime - Age
    {"just stored", s(60), s(0), 0, 60},
    {"under a second", s(60), ms(999), 0, 60},
    {"one second", s(60), s(1), 1, 59},
    {"last fresh second", s(60), ms(59'500), 59, 1},
    // stale: ttl goes to zero, then negative (RFC 9211 ttl)
    {"at fresh_until", s(60), s(60), 60, 0},
    {"stale", s(60), ms(61'200), 61, -1},
    {"zero ttl", s(0), s(10), 10, -10},
    // odd inputs
    {"lifetime not whole seconds", ms(1500), s(0), 0, 1},
    {"clock before stored_at", s(60), s(-3), 0, 60},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(entry_tests)

BOOST_DATA_TEST_CASE(classify_table, boost::unit_test::data::make(classify_cases), c) {
    const auto e = make(c.ttl, c.swr, c.sie);
    BOOST_TEST(e->classify(t0 + c.elapsed) == c.expected);
}

BOOST_DATA_TEST_CASE(age_and_ttl_table, boost::unit_test::data::make(age_cases), c) {
    const auto e = make(c.ttl, s(0), s(0));
    BOOST_TEST(e->age(t0 + c.elapsed).count() == c.age);
    BOOST_TEST(e->ttl_remaining(t0 + c.elapsed).count() == c.ttl_remaining);
}

BOOST_AUTO_TEST_CASE(windows_nest) {
    const auto e = make(s(60), s(30), s(10));
    BOOST_TEST((e->stored_at() == t0));
    BOOST_TEST((e->fresh_until() == t0 + s(60)));
    BOOST_TEST((e->stale_while_revalidate_until() == t0 + s(90)));
    BOOST_TEST((e->stale_if_error_until() == t0 + s(90)));
    const auto f = make(s(60), s(30), s(120));
    BOOST_TEST((f->stale_if_error_until() == t0 + s(180)));
}

// Windows are 32-bit millisecond offsets: longer ones are capped at 2^32 - 1 ms (~49.7 days).
BOOST_AUTO_TEST_CASE(long_windows_are_capped) {
    const auto cap = milliseconds(0xffff'ffffLL);
    const auto e = make(std::chrono::hours(24 * 60), s(30), std::chrono::hours(24 * 365));
    BOOST_TEST((e->fresh_until() == t0 + cap));
    BOOST_TEST((e->stale_while_revalidate_until() == t0 + cap));
    BOOST_TEST((e->stale_if_error_until() == t0 + cap));
    BOOST_TEST(e->classify(t0 + cap - ms(1)) == freshness::fresh);
    BOOST_TEST(e->classify(t0 + cap) == freshness::expired);
    const auto f = make(std::chrono::hours(24), std::chrono::hours(24 * 40), s(0));
    BOOST_TEST((f->stale_while_revalidate_until() == t0 + std::chrono::hours(24 * 41)));
}

BOOST_AUTO_TEST_CASE(head_and_body_are_one_buffer) {
    const std::string_view body = R"({"success":true,"result":{"id":"img"}})";
    const auto e = make(s(60), s(0), s(0), body);
    BOOST_TEST(e->head() == "HTTP/1.1 200 OK\r\nContent-Length: 38\r\n");
    BOOST_TEST(e->body() == body);
    // One buffer: the body starts where the head ends (compared as addresses, not strings).
    const void* head_end = e->head().data() + e->head().size();
    const void* body_start = e->body().data();
    BOOST_TEST(head_end == body_start);
    BOOST_TEST(e->status() == 200u);
    BOOST_TEST(e->kind() == entry_kind::positive);
    BOOST_TEST(e->key().image_id() == "img");
}

BOOST_AUTO_TEST_CASE(negative_entry_and_empty_body) {
    const auto e = make_entry({.key = key("acct", "gone"),
                               .status = 404,
                               .kind = entry_kind::negative,
                               .stored_at = t0,
                               .ttl = s(30)});
    BOOST_TEST(e->head() == "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n");
    BOOST_TEST(e->body().empty());
    BOOST_TEST(e->kind() == entry_kind::negative);
    const auto other = make_entry({.key = key("a", "b"), .status = 299});
    BOOST_TEST(other->head().starts_with("HTTP/1.1 299 \r\n"));
}

BOOST_AUTO_TEST_CASE(bytes_follow_the_formula) {
    const std::string body(1000, 'x');
    const key k("023e105f4ecef8ad9ca31a8372d0c353", "2cdc28f0-017a-49c4-9ed7-87056c83901");
    const auto e = make_entry({.key = k, .body = body, .stored_at = t0, .ttl = s(1)});
    // One slot: control block, entry, key, head, body.
    const std::size_t expected =
        entry_slot_bytes(24 + sizeof(entry) + k.joined().size() + e->head().size() + body.size());
    BOOST_TEST(e->bytes() == expected);
    BOOST_TEST(e->bytes() > body.size() + e->head().size() + k.joined().size());
    // Each body byte is charged once, give or take the 16-byte allocation granularity.
    const auto bigger = make_entry({.key = k, .body = std::string(2000, 'x')});
    BOOST_TEST(bigger->bytes() - e->bytes() >= 1000u - 16u);
    BOOST_TEST(bigger->bytes() - e->bytes() <= 1000u + 16u);
}

BOOST_AUTO_TEST_CASE(key_is_stored_once_inside_the_entry) {
    const key k("023e105f4ecef8ad9ca31a8372d0c353", std::string_view("a/b\0c", 5));
    const auto e = make_entry({.key = k, .body = "{}", .stored_at = t0});
    BOOST_TEST((e->key() == k));
    BOOST_TEST(e->key().account() == k.account());
    BOOST_TEST(e->key().image_id() == k.image_id());
    // The key bytes sit in the entry's own buffer, right before the head.
    BOOST_TEST(static_cast<const void*>(e->key().image_id().data()) ==
               static_cast<const void*>(e->key().account().data() + k.account().size() + 1));
    const void* key_end = e->key().image_id().data() + e->key().image_id().size();
    const void* head_start = e->head().data();
    BOOST_TEST(key_end == head_start);
    BOOST_TEST(!(e->key() == key("023e105f4ecef8ad9ca31a8372d0c35", "3a/b")));
}

// The issue's memory target: a realistic record (590-byte body, 36-character id, 32-character
// account) costs at most 256 bytes beyond its body as an entry.
BOOST_AUTO_TEST_CASE(realistic_entry_fits_one_chunk) {
    const key k("023e105f4ecef8ad9ca31a8372d0c353", "2cdc28f0-017a-49c4-9ed7-87056c83901a");
    BOOST_TEST_REQUIRE(k.image_id().size() == 36u);
    const std::string body(590, 'x');
    const auto e = make_entry({.key = k, .body = body, .stored_at = t0, .ttl = s(300)});
    BOOST_TEST(sizeof(entry) <= 32u);
    BOOST_TEST(e->bytes() - body.size() <= 184u);
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// Above the arena's largest slot, bytes() is the real malloc footprint: the entry's single
// allocation starts with the 24-byte control block, and glibc's chunk for it is
// malloc_usable_size + the 8-byte header.
BOOST_AUTO_TEST_CASE(bytes_match_the_malloc_footprint) {
    const key k("023e105f4ecef8ad9ca31a8372d0c353", "2cdc28f0-017a-49c4-9ed7-87056c83901a");
    for (const std::size_t size : {entry_max_slot_bytes, std::size_t{70'000}}) {
        const std::string body(size, 'x');
        const auto e = make_entry({.key = k, .body = body, .stored_at = t0});
        auto* block = const_cast<char*>(reinterpret_cast<const char*>(e.get())) - 24;  // NOLINT
        BOOST_TEST_CONTEXT("body " << size) {
            BOOST_TEST(malloc_usable_size(block) + 8 == e->bytes());
        }
    }
}

// Below it, entries live in arena slots: a freed entry's slot is the next one of its size
// class.
BOOST_AUTO_TEST_CASE(arena_reuses_slots_of_a_size_class) {
    const key k("023e105f4ecef8ad9ca31a8372d0c353", "2cdc28f0-017a-49c4-9ed7-87056c83901a");
    const std::string body(590, 'x');
    auto first = make_entry({.key = k, .body = body, .stored_at = t0});
    const void* slot = first.get();
    first.reset();
    const auto again = make_entry({.key = k, .body = body, .stored_at = t0});
    BOOST_TEST(static_cast<const void*>(again.get()) == slot);
}
#endif

BOOST_AUTO_TEST_CASE(slot_bytes_round_to_16_then_follow_malloc) {
    BOOST_TEST(entry_slot_bytes(1) == 16u);
    BOOST_TEST(entry_slot_bytes(790) == 800u);
    BOOST_TEST(entry_slot_bytes(entry_max_slot_bytes) == entry_max_slot_bytes);
    BOOST_TEST(entry_slot_bytes(entry_max_slot_bytes + 1) ==
               allocation_bytes(entry_max_slot_bytes + 1));
}

BOOST_AUTO_TEST_CASE(allocation_bytes_matches_glibc_chunks) {
    BOOST_TEST(allocation_bytes(0) == 0u);
    BOOST_TEST(allocation_bytes(1) == 32u);
    BOOST_TEST(allocation_bytes(24) == 32u);
    BOOST_TEST(allocation_bytes(25) == 48u);
    BOOST_TEST(allocation_bytes(1000) == 1008u);
}

BOOST_AUTO_TEST_CASE(enum_names) {
    BOOST_TEST(to_string(freshness::stale_if_error) == "stale_if_error");
    BOOST_TEST(to_string(entry_kind::draft) == "draft");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::cache
