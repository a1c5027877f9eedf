// The method × path router: pattern matching and captures, 404 vs 405 with Allow, HEAD on
// GET routes, `owns` for patterns wider than their route, the fallback; and the data
// listener's table (image route) answering 404/405 exactly as the image handler did.
#include "gateway/http/router.hpp"
#include "gateway/image/routes.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <stdexcept>
#include <variant>

namespace ig = imagegate;
namespace gw = imagegate::gateway;
namespace http = boost::beast::http;

namespace {

gw::route_handler answer_with(std::string name) {
    return [name](const gw::request& req) -> gw::handler_result {
        std::string body = name;
        for (std::size_t i = 0; i < req.params.size; ++i) {
            body += "|" + std::string(req.params[i]);
        }
        return gw::make_reply(200, body, "text/plain");
    };
}

gw::router make_table() {
    gw::router r;
    r.add({http::verb::get}, "/healthz", "healthz", answer_with("healthz"));
    r.add({http::verb::delete_}, "/cache/accounts/{a}", "purge", answer_with("purge-account"));
    r.add({http::verb::delete_}, "/cache/accounts/{a}/images/{id+}", "purge",
          answer_with("purge-image"));
    r.add({http::verb::post}, "/items/{id}", "items", answer_with("post-item"));
    r.add({http::verb::patch, http::verb::delete_}, "/items/{id}", "items",
          answer_with("change-item"));
    r.add({http::verb::get}, "/static/*", "static", answer_with("static"));
    return r;
}

struct router_case {
    http::verb method;
    std::string target;
    unsigned status;
    std::string body_or_allow;  // the 200 body, or the Allow line of a 405
};
std::ostream& operator<<(std::ostream& os, const router_case& c) {
    return os << http::to_string(c.method) << ' ' << c.target;
}

const router_case router_cases[] = {
    // Exact paths; HEAD is served by GET routes; the query string is not the path.
    {http::verb::get, "/healthz", 200, "healthz"},
    {http::verb::head, "/healthz", 200, "healthz"},
    {http::verb::get, "/healthz?x=1", 200, "healthz"},
    {http::verb::get, "http://h/healthz", 200, "healthz"},
    {http::verb::post, "/healthz", 405, "Allow: GET, HEAD\r\n"},
    {http::verb::get, "/healthz/", 404, ""},
    {http::verb::get, "/healthzz", 404, ""},
    // Placeholders: one segment, `{x}` possibly empty, `{x+}` not.
    {http::verb::delete_, "/cache/accounts/abc", 200, "purge-account|abc"},
    {http::verb::delete_, "/cache/accounts/", 200, "purge-account|"},
    {http::verb::delete_, "/cache/accounts/abc/images/x%2Fy", 200, "purge-image|abc|x%2Fy"},
    {http::verb::delete_, "/cache/accounts/abc/images/", 404, ""},
    {http::verb::delete_, "/cache/accounts/abc/images/a/b", 404, ""},
    {http::verb::delete_, "/cache/accounts/abc/other/x", 404, ""},
    {http::verb::get, "/cache/accounts/abc", 405, "Allow: DELETE\r\n"},
    // One path, several routes: each takes its methods, a 405 lists them all.
    {http::verb::post, "/items/7", 200, "post-item|7"},
    {http::verb::patch, "/items/7", 200, "change-item|7"},
    {http::verb::get, "/items/7", 405, "Allow: DELETE, POST, PATCH\r\n"},
    // A prefix route captures the rest.
    {http::verb::get, "/static/a/b.css", 200, "static|a/b.css"},
    {http::verb::get, "/static", 404, ""},
    {http::verb::get, "/", 404, ""},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(router)

BOOST_DATA_TEST_CASE(routes_by_method_and_path, boost::unit_test::data::make(router_cases), c) {
    const gw::router table = make_table();
    gw::request req;
    req.method = c.method;
    req.target = c.target;
    auto result = table.dispatch(req);
    BOOST_REQUIRE(std::holds_alternative<gw::reply>(result));
    const auto& r = std::get<gw::reply>(result);
    BOOST_TEST(r.status == c.status);
    if (c.status == 200) {
        BOOST_TEST(r.body() == c.body_or_allow);
    } else if (c.status == 405) {
        BOOST_TEST(r.head.view().find(c.body_or_allow) != std::string_view::npos, r.head.view());
        // One Allow line only (make_error_reply adds its default only without one).
        BOOST_TEST(r.head.view().find("Allow: ") == r.head.view().rfind("Allow: "));
        BOOST_TEST(r.body().find(R"("code":99405)") != std::string_view::npos);
    } else {
        BOOST_TEST(r.body().find(R"("code":99404)") != std::string_view::npos);
        BOOST_TEST(r.route == "not_found");
    }
}

BOOST_AUTO_TEST_CASE(a_405_is_labelled_with_its_route) {
    const gw::router table = make_table();
    const auto d = table.decide(http::verb::put, "/cache/accounts/abc");
    BOOST_TEST(d.found == nullptr);
    BOOST_TEST(d.refusal == ig::errc::method_not_allowed);
    BOOST_TEST(table.refuse(d).route == "purge");
}

BOOST_AUTO_TEST_CASE(owns_turns_a_405_into_a_404) {
    gw::router r;
    gw::route_options o;
    o.owns = [](std::string_view target) { return !target.ends_with("/keys"); };
    r.add({http::verb::get}, "/x/{id}", "x", answer_with("x"), o);
    BOOST_TEST(r.decide(http::verb::post, "/x/1").refusal == ig::errc::method_not_allowed);
    BOOST_TEST(r.decide(http::verb::post, "/x/keys").refusal == ig::errc::route_not_found);
    // The method it takes still goes to the handler, which answers such paths itself.
    BOOST_TEST(r.decide(http::verb::get, "/x/keys").found != nullptr);
}

BOOST_AUTO_TEST_CASE(the_fallback_takes_unknown_paths_and_every_method) {
    gw::router r;
    r.add({http::verb::get}, "/a", "a", answer_with("a"));
    r.set_fallback(answer_with("fallback"));
    BOOST_TEST(r.decide(http::verb::options, "/zzz").found != nullptr);
    BOOST_TEST(r.decide(http::verb::post, "/a").refusal == ig::errc::method_not_allowed);
}

BOOST_AUTO_TEST_CASE(bad_patterns_are_refused) {
    for (const char* p : {"healthz", "/a{b}", "/{a}b", "/*/x", "/{a}/{b}/{c}/{d}/{e}", "/{"}) {
        BOOST_CHECK_THROW(gw::path_pattern{p}, std::invalid_argument);
    }
}

// The data listener's table: the image route's shape goes to the handler, everything else is
// refused as the image handler always refused it (its Cache-Status, the "image" label on a
// 405, sibling endpoints 404 whatever the method).
BOOST_AUTO_TEST_CASE(the_image_table_refuses_as_the_image_handler_did) {
    const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";
    gw::router table;
    gw::add_image_routes(table, answer_with("image"));
    struct row {
        http::verb method;
        std::string target;
        bool routed;
        unsigned status;  // when refused
    };
    const row rows[] = {
        {http::verb::get, "/client/v4/accounts/" + account + "/images/v1/abc", true, 0},
        {http::verb::head, "/accounts/" + account + "/images/v1/abc", true, 0},
        {http::verb::get, "/client/v4/accounts/" + account + "/images/v1/keys", true, 0},
        {http::verb::get, "/client/v4/accounts/" + account + "/images/v1/", true, 0},
        {http::verb::post, "/client/v4/accounts/" + account + "/images/v1/abc", false, 405},
        {http::verb::post, "/client/v4/accounts/bad/images/v1/abc", false, 405},
        {http::verb::post, "/client/v4/accounts/" + account + "/images/v1/keys", false, 404},
        {http::verb::delete_, "/client/v4/accounts/" + account + "/images/v1/%6Beys", false, 404},
        // GET/HEAD under the prefix go to the handler, which checks the path and answers
        // these 404 itself (handler_checks_path); other methods are matched whole.
        {http::verb::get, "/client/v4/accounts/" + account + "/images/v1/abc/blob", true, 0},
        {http::verb::get, "/client/v4/accounts/" + account + "/images/v2/abc", true, 0},
        {http::verb::post, "/client/v4/accounts/" + account + "/images/v1/abc/blob", false, 404},
        {http::verb::get, "/client/v4/other", false, 404},
        {http::verb::post, "/client/v4", false, 404},
    };
    for (const auto& c : rows) {
        BOOST_TEST_CONTEXT(http::to_string(c.method) << ' ' << c.target) {
            const auto d = table.decide(c.method, c.target);
            BOOST_TEST((d.found != nullptr) == c.routed);
            if (!c.routed) {
                const gw::reply r = table.refuse(d);
                BOOST_TEST(r.status == c.status);
                BOOST_TEST(r.head.view().find("Cache-Status: imagegate") != std::string::npos);
                BOOST_TEST(r.route == (c.status == 405 ? "image" : "not_found"));
                if (c.status == 405) {
                    BOOST_TEST(r.head.view().find("Allow: GET, HEAD\r\n") != std::string::npos);
                }
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
