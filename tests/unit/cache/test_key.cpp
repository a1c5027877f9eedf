// cache::key: the joined layout, equality, hashing and log-safe printing.
#include "cache/key.hpp"

#include <boost/test/unit_test.hpp>

#include <sstream>
#include <unordered_set>

namespace imagegate::cache {

BOOST_AUTO_TEST_SUITE(key_tests)

BOOST_AUTO_TEST_CASE(parts_round_trip) {
    const key k("023e105f4ecef8ad9ca31a8372d0c353", std::string_view("a/b\0c", 5));
    BOOST_TEST(k.account() == "023e105f4ecef8ad9ca31a8372d0c353");
    BOOST_TEST(k.image_id() == std::string_view("a/b\0c", 5));
    const key empty;
    BOOST_TEST(empty.account().empty());
    BOOST_TEST(empty.image_id().empty());
    BOOST_TEST((empty == key("", "")));
}

BOOST_AUTO_TEST_CASE(split_point_matters) {
    const key a("ab", "c");
    const key b("a", "bc");
    BOOST_TEST(!(a == b));
    BOOST_TEST(key_hash{}(a) != key_hash{}(b));
    // A NUL inside a part joins to the same bytes, but the split keeps the keys (and, in
    // practice, their hashes) apart.
    const key c(std::string_view("a\0b", 3), "c");
    const key d("a", std::string_view("b\0c", 3));
    BOOST_TEST(c.joined() == d.joined());
    BOOST_TEST(!(c == d));
    BOOST_TEST(key_hash{}(c) != key_hash{}(d));
}

BOOST_AUTO_TEST_CASE(equal_keys_hash_equal) {
    const key a("acct", "id-1");
    const key b(std::string("acct"), std::string("id-1"));
    BOOST_TEST((a == b));
    BOOST_TEST(key_hash{}(a) == key_hash{}(b));
    BOOST_TEST(std::hash<key>{}(a) == key_hash{}(a));
    std::unordered_set<key> set{a, b, key("acct", "id-2")};
    BOOST_TEST(set.size() == 2u);
}

BOOST_AUTO_TEST_CASE(heap_bytes_follow_the_string) {
    BOOST_TEST(key("a", "b").heap_bytes() == 0u);
    const key long_key("023e105f4ecef8ad9ca31a8372d0c353", "2cdc28f0-017a-49c4-9ed7-87056c83901");
    BOOST_TEST(long_key.heap_bytes() >= long_key.joined().size() + 1);
}

BOOST_AUTO_TEST_CASE(printing_escapes_control_bytes) {
    std::ostringstream os;
    os << key("acct", std::string_view("a\n\"b\"\\\x01\xc3\xa9", 9));
    BOOST_TEST(os.str() == R"(acct/"a\x0a\x22b\x22\x5c\x01\xc3\xa9")");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::cache
