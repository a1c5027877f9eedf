// shield::failure_memo with an injected clock: a failure is answered for exactly its TTL,
// refreshed by a newer one, forgotten on request, and the memory stays bounded.
#include "gateway/shield/failure_memo.hpp"
#include "print.hpp"

#include <boost/test/unit_test.hpp>

#include <string>

namespace imagegate::shield {
namespace {

using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);

using memo = failure_memo<std::string, int>;

}  // namespace

BOOST_AUTO_TEST_SUITE(failure_memory)

BOOST_AUTO_TEST_CASE(a_failure_is_remembered_for_its_ttl) {
    memo m(16);
    BOOST_TEST(!m.lookup("a", t0));
    m.remember("a", 502, t0);
    const auto got = m.lookup("a", t0 + 400ms);
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST(got->value == 502);
    BOOST_TEST(got->remaining == duration(600ms));
    BOOST_TEST(m.lookup("a", t0 + 999ms).has_value());
    BOOST_TEST(!m.lookup("a", t0 + 1s));  // exactly failure_memo_ttl later: gone
    BOOST_TEST(!m.lookup("b", t0));
}

BOOST_AUTO_TEST_CASE(a_newer_failure_replaces_the_older) {
    memo m(16);
    m.remember("a", 502, t0);
    m.remember("a", 504, t0 + 800ms);
    const auto got = m.lookup("a", t0 + 1500ms);
    BOOST_TEST_REQUIRE(got.has_value());
    BOOST_TEST(got->value == 504);
    BOOST_TEST(got->remaining == duration(300ms));
    BOOST_TEST(m.size() == 1u);
}

BOOST_AUTO_TEST_CASE(forget_drops_it) {
    memo m(16);
    m.remember("a", 502, t0);
    m.forget("a");
    BOOST_TEST(!m.lookup("a", t0));
}

BOOST_AUTO_TEST_CASE(memory_is_bounded_oldest_first) {
    memo m(3);
    for (int i = 0; i < 10; ++i) {
        m.remember("k" + std::to_string(i), i, t0 + std::chrono::milliseconds(i));
        BOOST_TEST(m.size() <= 3u);
    }
    BOOST_TEST(!m.lookup("k6", t0 + 10ms));
    BOOST_TEST(m.lookup("k7", t0 + 10ms).has_value());
    BOOST_TEST(m.lookup("k9", t0 + 10ms).has_value());
    // Expired entries leave on the next insert; a refreshed key is not evicted for its old
    // place in line.
    m.remember("k7", 70, t0 + 20ms);
    m.remember("x", 1, t0 + 2s);
    BOOST_TEST(m.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::shield
