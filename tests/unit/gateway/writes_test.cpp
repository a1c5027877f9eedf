// classify_write(): which forwarded requests are image writes, and the cache key each one
// changes (the read path's canonical key, whichever way the id was spelled).
#include "gateway/image/writes.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

namespace gw = imagegate::gateway;
namespace http = boost::beast::http;
using kind = gw::write_target::kind;

namespace {

const std::string write_account = "023e105f4ecef8ad9ca31a8372d0c353";
const std::string v4 = "/client/v4/accounts/" + write_account;
const std::string bare = "/accounts/" + write_account;

struct write_case {
    http::verb method;
    std::string path;
    std::optional<kind> expected;
    std::string image_id;      // decoded
    std::string canonical_id;  // the cache key's id
};
std::ostream& operator<<(std::ostream& os, const write_case& c) {
    return os << c.method << ' ' << c.path;
}

const write_case cases[] = {
    {http::verb::patch, v4 + "/images/v1/abc", kind::edit, "abc", "abc"},
    {http::verb::patch, bare + "/images/v1/abc?x=1", kind::edit, "abc", "abc"},
    {http::verb::delete_, v4 + "/images/v1/abc", kind::remove, "abc", "abc"},
    // Both spellings of a custom id give one key.
    {http::verb::patch, v4 + "/images/v1/folder%2Fsub%2Fx", kind::edit, "folder/sub/x",
     "folder%2Fsub%2Fx"},
    {http::verb::delete_, v4 + "/images/v1/folder/sub/x", kind::remove, "folder/sub/x",
     "folder%2Fsub%2Fx"},
    {http::verb::patch, v4 + "/images/v1/a%2fb", kind::edit, "a/b", "a%2Fb"},
    // Uploads: the id is learnt from the answer.
    {http::verb::post, v4 + "/images/v1", kind::upload, "", ""},
    {http::verb::post, bare + "/images/v1?x", kind::upload, "", ""},
    // Not image writes.
    {http::verb::get, v4 + "/images/v1/abc", std::nullopt, "", ""},
    {http::verb::put, v4 + "/images/v1/abc", std::nullopt, "", ""},
    {http::verb::post, v4 + "/images/v1/abc", std::nullopt, "", ""},
    {http::verb::post, v4 + "/images/v1/", std::nullopt, "", ""},
    {http::verb::post, v4 + "/images/v2/direct_upload", std::nullopt, "", ""},
    {http::verb::post, "/client/v4/accounts/ABC/images/v1", std::nullopt, "", ""},
    {http::verb::patch, v4 + "/images/v1/keys", std::nullopt, "", ""},
    {http::verb::delete_, v4 + "/images/v1/variants/thumb", std::nullopt, "", ""},
    {http::verb::delete_, v4 + "/images/v1/abc/blob", std::nullopt, "", ""},
    {http::verb::delete_, v4 + "/images/v1/a/../b", std::nullopt, "", ""},
    {http::verb::patch, v4 + "/images/v2", std::nullopt, "", ""},
    {http::verb::delete_, "/client/v4/zones/abc", std::nullopt, "", ""},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(image_writes)

BOOST_DATA_TEST_CASE(classify, boost::unit_test::data::make(cases), c) {
    const auto t = gw::classify_write(c.method, c.path);
    BOOST_TEST_REQUIRE(t.has_value() == c.expected.has_value());
    if (t) {
        BOOST_TEST(t->k == *c.expected);
        BOOST_TEST(t->account == write_account);
        BOOST_TEST(t->image_id == c.image_id);
        BOOST_TEST(t->canonical_id == c.canonical_id);
    }
}

BOOST_AUTO_TEST_SUITE_END()
