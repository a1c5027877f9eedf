#include "gateway/http/envelope.hpp"
#include "gateway/core/errc.hpp"
#include "gateway/http/reply.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <set>

namespace ig = imagegate;
namespace gw = imagegate::gateway;

BOOST_DATA_TEST_CASE(every_errc_has_message_status_and_code,
                     boost::unit_test::data::make(ig::all_errcs), e) {
    const auto ec = make_error_code(e);
    BOOST_TEST(std::string(ec.category().name()) == "imagegate");
    BOOST_TEST(!ec.message().empty());
    BOOST_TEST(ig::to_http_status(e) >= 400u);
    BOOST_TEST(ig::to_http_status(e) < 600u);
    BOOST_TEST(ig::to_envelope_code(e) >= 99000u);
    BOOST_TEST(ec == e);
}

BOOST_AUTO_TEST_CASE(envelope_codes_are_unique) {
    std::set<std::uint32_t> seen;
    for (const auto e : ig::all_errcs) {
        BOOST_TEST(seen.insert(ig::to_envelope_code(e)).second,
                   "duplicate code " << ig::to_envelope_code(e));
    }
}

BOOST_AUTO_TEST_CASE(envelope_is_cloudflare_shaped) {
    BOOST_TEST(gw::error_envelope(ig::errc::route_not_found) ==
               R"({"success":false,"errors":[{"code":99404,"message":"No route for that URI"}],)"
               R"("messages":[],"result":null})");
    BOOST_TEST(gw::error_envelope(5, "a\"b\\c\n\x01") ==
               R"({"success":false,"errors":[{"code":5,"message":"a\"b\\c\n\u0001"}],)"
               R"("messages":[],"result":null})");
}

BOOST_AUTO_TEST_CASE(error_reply_has_length_and_allow) {
    const auto r = gw::make_error_reply(ig::errc::method_not_allowed);
    BOOST_TEST(r.status == 405u);
    BOOST_TEST(r.head.view().starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    BOOST_TEST(r.head.view().find("Allow: GET, HEAD\r\n") != std::string::npos);
    BOOST_TEST(r.head.view().find("Content-Length: " + std::to_string(r.body().size()) + "\r\n") !=
               std::string_view::npos);
}

BOOST_AUTO_TEST_CASE(reply_body_survives_moves) {
    gw::reply a = gw::make_reply(200, "short", "text/plain");
    gw::reply b = std::move(a);
    gw::reply c;
    c = std::move(b);
    BOOST_TEST(c.body() == "short");
}

BOOST_AUTO_TEST_CASE(head_buffer_spills_and_moves) {
    gw::head_buffer h;
    h += "Age: 1\r\n";
    gw::head_buffer moved = std::move(h);
    BOOST_TEST(moved.view() == "Age: 1\r\n");
    std::string big(500, 'x');
    moved += big;
    BOOST_TEST(moved.size() == 508u);
    gw::head_buffer copy = moved;
    BOOST_TEST(copy.view() == moved.view());
    gw::head_buffer again = std::move(copy);
    BOOST_TEST(again.view().substr(0, 8) == "Age: 1\r\n");
    BOOST_TEST(again.size() == 508u);
}

// What SDKs read before retrying (they honour x-should-retry, then retry-after-ms, then
// Retry-After): decided by the errc table, for every error the gateway answers.
BOOST_DATA_TEST_CASE(error_replies_tell_sdks_whether_and_when_to_retry,
                     boost::unit_test::data::make(ig::all_errcs), e) {
    const auto r = gw::make_error_reply(e);
    const auto head = std::string(r.head.view());
    const bool says_no = head.find("x-should-retry: false\r\n") != std::string::npos;
    BOOST_TEST(says_no == !ig::retry_may_help(e));
    const unsigned status = ig::to_http_status(e);
    const bool timed = head.find("Retry-After: 1\r\nretry-after-ms: 1000\r\n") != std::string::npos;
    BOOST_TEST(timed == (status == 429 || status == 503));
    if (status < 500 && status != 429) {
        BOOST_TEST(says_no);  // the client's own mistakes: asking again cannot help
    }
}

BOOST_AUTO_TEST_CASE(retry_after_says_what_the_caller_knows) {
    const auto r = gw::make_error_reply(ig::errc::budget_exhausted, {},
                                        gw::retry_after{.seconds = 7, .milliseconds = 7400});
    BOOST_TEST(r.head.view().find("Retry-After: 7\r\nretry-after-ms: 7400\r\n") !=
               std::string_view::npos);
    // Never 0: SDKs would retry at once.
    const auto z = gw::make_error_reply(ig::errc::upstream_bad_status, {},
                                        gw::retry_after{.seconds = 0, .milliseconds = 0});
    BOOST_TEST(z.head.view().find("Retry-After: 1\r\nretry-after-ms: 1\r\n") !=
               std::string_view::npos);
    // Which errors a retry cannot fix, decided once (gateway/core/errc.cpp).
    BOOST_TEST(!ig::retry_may_help(ig::errc::invalid_upstream_json));
    BOOST_TEST(!ig::retry_may_help(ig::errc::upstream_too_large));
    BOOST_TEST(!ig::retry_may_help(ig::errc::bad_request));
    BOOST_TEST(ig::retry_may_help(ig::errc::upstream_timeout));
    BOOST_TEST(ig::retry_may_help(ig::errc::budget_exhausted));
}
