#include "gateway/admin/handler.hpp"
#include "gateway/metrics/registry.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

namespace gw = imagegate::gateway;
namespace http = boost::beast::http;

namespace {

const std::string admin_token = "admin-secret-0123456789";

struct admin_fixture {
    imagegate::metrics::registry registry;
    std::atomic<bool> ready{true};
    std::vector<std::string> purged;
    gw::admin_handler handler{
        registry, ready,
        gw::purge_hooks{[this](std::string_view a, std::string_view id) {
                            purged.push_back(std::string(a) + "/" + std::string(id));
                            return true;
                        },
                        [this](std::string_view a) {
                            purged.push_back(std::string(a));
                            return std::size_t{3};
                        }},
        admin_token};

    http::fields auth_headers;

    admin_fixture() { auth_headers.set(http::field::authorization, "Bearer " + admin_token); }

    gw::reply call(http::verb m, std::string_view target, bool with_token = true) {
        gw::request req;
        req.method = m;
        req.target = target;
        req.headers = with_token ? &auth_headers : nullptr;
        return handler.answer(req);
    }
};

struct admin_case {
    http::verb method;
    std::string target;
    unsigned status;
};
std::ostream& operator<<(std::ostream& os, const admin_case& c) {
    return os << http::to_string(c.method) << ' ' << c.target;
}

const std::string test_account = "023e105f4ecef8ad9ca31a8372d0c353";
const admin_case admin_cases[] = {
    {http::verb::get, "/healthz", 200},
    {http::verb::head, "/healthz", 200},
    {http::verb::post, "/healthz", 405},
    {http::verb::get, "/readyz", 200},
    {http::verb::get, "/metrics", 200},
    {http::verb::get, "/nope", 404},
    {http::verb::delete_, "/cache/accounts/" + test_account, 200},
    {http::verb::delete_, "/cache/accounts/" + test_account + "/images/a%2fb", 200},
    {http::verb::get, "/cache/accounts/" + test_account, 405},
    {http::verb::delete_, "/cache/accounts/xyz", 400},
    {http::verb::delete_, "/cache/accounts/" + test_account + "/images/a%zz", 400},
    {http::verb::delete_, "/cache/accounts/" + test_account + "/other/x", 404},
};

}  // namespace

BOOST_DATA_TEST_CASE_F(admin_fixture, admin_routes, boost::unit_test::data::make(admin_cases), c) {
    BOOST_TEST(call(c.method, c.target).status == c.status);
}

BOOST_FIXTURE_TEST_CASE(purge_uses_canonical_ids, admin_fixture) {
    auto r = call(http::verb::delete_, "/cache/accounts/" + test_account + "/images/a%2fb");
    BOOST_TEST(r.body().find(R"("purged":1)") != std::string_view::npos);
    r = call(http::verb::delete_, "/cache/accounts/" + test_account);
    BOOST_TEST(r.body().find(R"("purged":3)") != std::string_view::npos);
    BOOST_TEST(purged.size() == 2u);
    BOOST_TEST(purged[0] == test_account + "/a%2Fb");
}

BOOST_FIXTURE_TEST_CASE(readyz_follows_state, admin_fixture) {
    ready = false;
    BOOST_TEST(call(http::verb::get, "/readyz").status == 503u);
}

BOOST_FIXTURE_TEST_CASE(metrics_count_by_route_and_status, admin_fixture) {
    registry.record("image", 200, std::chrono::milliseconds(3), "hit");
    registry.record("image", 200, std::chrono::milliseconds(3), "hit");
    registry.record("image", 418, std::chrono::milliseconds(3));
    const std::string text(call(http::verb::get, "/metrics").body());
    BOOST_TEST(text.find("imagegate_requests_total{route=\"image\",status=\"200\"} 2") !=
               std::string::npos);
    BOOST_TEST(text.find("imagegate_requests_total{route=\"image\",status=\"other\"} 1") !=
               std::string::npos);
    const auto contains = [](const std::string& t, std::string_view part) {
        return t.find(part) != std::string::npos;
    };
    BOOST_TEST(contains(text, "imagegate_image_request_duration_seconds_count{cache=\"hit\"} 2\n"));
    BOOST_TEST(
        contains(text, "imagegate_image_request_duration_seconds_count{cache=\"error\"} 1\n"));
    BOOST_TEST(contains(text,
                        "imagegate_image_request_duration_seconds_bucket{cache=\"hit\","
                        "le=\"0.0025\"} 0\n"));
    BOOST_TEST(contains(text,
                        "imagegate_image_request_duration_seconds_bucket{cache=\"hit\","
                        "le=\"0.005\"} 2\n"));
    BOOST_TEST(
        contains(text, "imagegate_image_request_duration_seconds_count{cache=\"miss\"} 0\n"));
    // One HELP/TYPE for the family.
    std::size_t helps = 0;
    for (auto at = text.find("# TYPE imagegate_image_request_duration_seconds ");
         at != std::string::npos;
         at = text.find("# TYPE imagegate_image_request_duration_seconds ", at + 1)) {
        ++helps;
    }
    BOOST_TEST(helps == 1u);
}

BOOST_AUTO_TEST_CASE(cache_class_of_every_image_answer) {
    using imagegate::metrics::registry;
    struct row {
        unsigned status;
        std::string_view cache_status;
        std::string_view expected;
    };
    const row rows[] = {
        {200, "hit", "hit"},
        {404, "hit", "hit"},  // a cached "not found"
        {200, "fwd=stale", "stale"},
        {200, "fwd=miss; detail=l2-hit", "l2"},
        {200, "fwd=miss; stored", "miss"},
        {200, "fwd=miss", "miss"},
        {404, "fwd=miss", "miss"},
        {200, "collapsed", "miss"},
        {429, "error; detail=budget; reason=queue_full", "refused"},
        {401, "error; detail=unauthorized", "refused"},
        {403, "error; detail=forbidden", "refused"},
        {502, "error; detail=upstream_invalid", "error"},
        {504, "error; detail=upstream_timeout", "error"},
        {200, "client-gone", "error"},
        {400, "", "error"},
        {200, "", "other"},
        {304, "hits", "other"},
    };
    for (const auto& r : rows) {
        BOOST_TEST(
            registry::cache_classes[registry::cache_class(r.status, r.cache_status)] == r.expected,
            r.status << " " << r.cache_status);
    }
}

BOOST_FIXTURE_TEST_CASE(purge_needs_the_admin_token, admin_fixture) {
    const std::string target = "/cache/accounts/" + test_account;
    BOOST_TEST(call(http::verb::delete_, target, false).status == 401u);
    auth_headers.set(http::field::authorization, "Bearer wrong-token-0123456789");
    BOOST_TEST(call(http::verb::delete_, target).status == 401u);
    auth_headers.set(http::field::authorization, "Basic " + admin_token);
    BOOST_TEST(call(http::verb::delete_, target).status == 401u);
    BOOST_TEST(purged.empty());
    // Health and metrics stay open.
    BOOST_TEST(call(http::verb::get, "/metrics", false).status == 200u);
}

BOOST_AUTO_TEST_CASE(purge_is_refused_without_a_configured_token) {
    imagegate::metrics::registry registry;
    std::atomic<bool> ready{true};
    gw::admin_handler handler(registry, ready, gw::purge_hooks{}, "");
    http::fields h;
    h.set(http::field::authorization, "Bearer ");
    gw::request req;
    req.method = http::verb::delete_;
    req.target = "/cache/accounts/023e105f4ecef8ad9ca31a8372d0c353";
    req.headers = &h;
    BOOST_TEST(handler.answer(req).status == 403u);
}
