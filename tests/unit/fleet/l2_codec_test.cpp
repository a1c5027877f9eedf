// fleet::l2_codec: encode/decode round trips, every refusal of hostile bytes (table-driven),
// body re-validation, and the mapping between wall-clock records and L1 entries.
#include "gateway/fleet/l2_codec.hpp"

#include <boost/test/unit_test.hpp>

using namespace imagegate;
using namespace imagegate::fleet;
using namespace std::chrono_literals;

namespace {

const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";
constexpr std::int64_t now_ms = 1'800'000'000'000;

std::string record_body(std::string_view id, bool draft = false) {
    return R"({"success":true,"errors":[],"messages":[],"result":{"id":")" + std::string(id) +
           R"(","filename":"a.png","uploaded":"2024-01-01T00:00:00Z","requireSignedURLs":false,"variants":[])" +
           (draft ? R"(,"draft":true)" : "") + "}}";
}

l2_record sample(std::string id = "img-1") {
    l2_record r;
    r.status = 200;
    r.kind = cache::entry_kind::positive;
    r.stored_ms = now_ms - 1000;
    r.fresh_ms = 300'000;
    r.swr_ms = 360'000;
    r.sie_ms = 86'700'000;
    r.account = account;
    r.body = record_body(id);
    r.id = std::move(id);
    return r;
}

l2_refusal decode_as(const std::string& bytes, std::string_view id, l2_record& out) {
    return decode(bytes, {account, id}, now_ms, {}, out);
}

}  // namespace

BOOST_AUTO_TEST_CASE(round_trip) {
    const auto r = sample();
    l2_record back;
    BOOST_TEST((decode_as(encode(r), "img-1", back) == l2_refusal::none));
    BOOST_TEST((back == r));
    simdjson::ondemand::parser parser;
    BOOST_TEST((check_body(back, "img-1", parser) == l2_refusal::none));
}

BOOST_AUTO_TEST_CASE(refusals) {
    const std::string good = encode(sample());
    const auto with = [&](std::size_t at, char c) {
        std::string s = good;
        s[at] = c;
        return s;
    };
    auto reorder = sample();
    reorder.swr_ms = reorder.fresh_ms - 1;
    auto future = sample();
    future.stored_ms = now_ms + 120'000;
    auto expired = sample();
    expired.stored_ms = now_ms - expired.sie_ms;
    auto negative_200 = sample();
    negative_200.kind = cache::entry_kind::negative;
    auto huge = sample();
    huge.body.assign(2 * 1024 * 1024, ' ');
    struct row {
        std::string name;
        std::string bytes;
        l2_refusal want;
    };
    const std::vector<row> rows{
        {"empty", "", l2_refusal::truncated},
        {"short header", good.substr(0, 20), l2_refusal::truncated},
        {"cut body", good.substr(0, good.size() - 1), l2_refusal::truncated},
        {"trailing byte", good + "x", l2_refusal::truncated},
        {"magic", with(0, 'X'), l2_refusal::bad_magic},
        {"version 2", with(4, 2), l2_refusal::future_version},
        {"version 0", with(4, 0), l2_refusal::future_version},
        {"kind 3", with(5, 3), l2_refusal::bad_kind},
        {"negative with 200", encode(negative_200), l2_refusal::bad_kind},
        {"windows out of order", encode(reorder), l2_refusal::bad_windows},
        {"from the future", encode(future), l2_refusal::from_future},
        {"expired", encode(expired), l2_refusal::expired},
        {"body over the limit", encode(huge), l2_refusal::too_large},
        {"another id's value", encode(sample("img-2")), l2_refusal::key_mismatch},
    };
    for (const auto& r : rows) {
        BOOST_TEST_CONTEXT(r.name) {
            l2_record out;
            BOOST_TEST((decode_as(r.bytes, "img-1", out) == r.want),
                       to_string(decode_as(r.bytes, "img-1", out)));
        }
    }
}

BOOST_AUTO_TEST_CASE(body_is_revalidated_like_an_upstream_answer) {
    simdjson::ondemand::parser parser;
    auto bad_json = sample();
    bad_json.body = R"({"success":true,"result":{"id":"img-1")";
    BOOST_TEST((check_body(bad_json, "img-1", parser) == l2_refusal::invalid_body));
    auto other_id = sample();
    other_id.body = record_body("img-9");
    BOOST_TEST((check_body(other_id, "img-1", parser) == l2_refusal::invalid_body));
    auto draft_as_positive = sample();
    draft_as_positive.body = record_body("img-1", true);
    BOOST_TEST((check_body(draft_as_positive, "img-1", parser) == l2_refusal::invalid_body));
    auto negative = sample();
    negative.kind = cache::entry_kind::negative;
    negative.status = 404;
    negative.body =
        R"({"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null})";
    BOOST_TEST((check_body(negative, "img-1", parser) == l2_refusal::none));
    negative.body =
        R"({"success":false,"errors":[{"code":9999,"message":"other"}],"messages":[],"result":null})";
    BOOST_TEST((check_body(negative, "img-1", parser) == l2_refusal::invalid_body));
}

BOOST_AUTO_TEST_CASE(entry_windows_never_outlive_the_record) {
    const auto now = cache::clock::now();
    const auto r = sample();  // stored 1 s ago
    const auto e = cache::make_entry(to_entry_params(r, {account, "img-1"}, now, now_ms));
    BOOST_TEST((e->fresh_until() == now - 1s + 300s));
    BOOST_TEST((e->stale_while_revalidate_until() == now - 1s + 360s));
    BOOST_TEST((e->stale_if_error_until() == now - 1s + 86'700s));
    BOOST_TEST(remaining_ms(r, now_ms) == 86'699'000);
    // And back: the same wall-clock record.
    const auto again = to_record(*e, now, now_ms);
    BOOST_TEST((again == r));
}
