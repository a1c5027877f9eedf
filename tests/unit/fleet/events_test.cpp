// fleet::parse_event: the strict parser of payloads from the events channel (anyone who can
// PUBLISH writes them), table-driven; and format/parse round trips.
#include "gateway/fleet/events.hpp"

#include <boost/test/unit_test.hpp>

using namespace imagegate::fleet;

namespace {
const std::string origin = "0123456789abcdef";
const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";
}  // namespace

BOOST_AUTO_TEST_CASE(round_trips) {
    for (const auto& e : {event{event_kind::purge_image, origin, account, "img-1"},
                          event{event_kind::purge_account, origin, account, ""},
                          event{event_kind::filled, origin, account, "a%2Fb~c.d_e-f"}}) {
        const auto parsed = parse_event(format_event(e));
        BOOST_REQUIRE(parsed.has_value());
        BOOST_TEST((*parsed == e));
    }
    BOOST_TEST(format_event({event_kind::purge_image, origin, account, "x"}) ==
               "P " + origin + " " + account + " x");
}

BOOST_AUTO_TEST_CASE(refuses_anything_off) {
    const std::string ok_tail = " " + origin + " " + account;
    const std::vector<std::string> bad{
        "",
        "P",
        "X" + ok_tail + " img",                                    // unknown kind
        "P" + ok_tail,                                             // image purge without id
        "A" + ok_tail + " img",                                    // account purge with an id
        "P" + ok_tail + " img extra",                              // too many fields
        "P" + ok_tail + " img ",                                   // trailing space
        "P  " + origin + " " + account + " img",                   // double space
        "P 0123456789ABCDEF " + account + " img",                  // upper-case origin
        "P 0123456789abcde " + account + " img",                   // short origin
        "P " + origin + " 023E105F4ECEF8AD9CA31A8372D0C353 img",   // upper-case account
        "P" + ok_tail + " a/b",                                    // not canonical
        "P" + ok_tail + " a%2fb",                                  // lower-case escape
        "P" + ok_tail + " a%2",                                    // cut escape
        "P" + ok_tail + " a\r\nb",                                 // CR LF
        "P" + ok_tail + " {x}",                                    // braces (hash tags)
        "F" + ok_tail + " " + std::string(4000, 'a'),              // over max_event_bytes
        std::string("P") + ok_tail + " a" + std::string(1, '\0'),  // NUL
    };
    for (const auto& p : bad) {
        BOOST_TEST_CONTEXT("payload size " << p.size() << ": " << p.substr(0, 60)) {
            BOOST_TEST(!parse_event(p).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(instance_ids_are_16_lower_hex_and_differ) {
    const auto a = random_instance_id();
    const auto b = random_instance_id();
    BOOST_TEST(a.size() == 16u);
    BOOST_TEST(a.find_first_not_of("0123456789abcdef") == std::string::npos);
    BOOST_TEST(a != b);
}
