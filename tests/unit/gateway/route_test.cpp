#define BOOST_TEST_MODULE unit_gateway
#include "gateway/image/route.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>

namespace ig = imagegate;
namespace gw = imagegate::gateway;
namespace bdata = boost::unit_test::data;

namespace {

const std::string test_account = "023e105f4ecef8ad9ca31a8372d0c353";

struct route_case {
    std::string target;
    ig::errc error;
    std::string image_id;       // decoded, when ok
    std::string canonical_id;   // when ok
    std::string upstream_id{};  // when ok; empty: the canonical id
};

std::ostream& operator<<(std::ostream& os, const route_case& c) { return os << c.target; }

// `part` n times, joined by `sep`.
std::string repeat(const std::string& part, const std::string& sep, int n) {
    std::string t = part;
    for (int i = 1; i < n; ++i) {
        t += sep + part;
    }
    return t;
}

const route_case route_cases[] = {
    // Both prefixes reach the image route.
    {"/client/v4/accounts/" + test_account + "/images/v1/abc", {}, "abc", "abc"},
    {"/accounts/" + test_account + "/images/v1/abc", {}, "abc", "abc"},
    // UUID-like and 35-character ids are opaque.
    {"/accounts/" + test_account + "/images/v1/083eb7b2-5392-4565-b69e-aff66acddd00",
     {},
     "083eb7b2-5392-4565-b69e-aff66acddd00",
     "083eb7b2-5392-4565-b69e-aff66acddd00"},
    // Custom ids with '/' are one %2F-encoded segment; case of hex digits does not matter.
    {"/accounts/" + test_account + "/images/v1/a%2Fb", {}, "a/b", "a%2Fb"},
    {"/accounts/" + test_account + "/images/v1/a%2fb", {}, "a/b", "a%2Fb"},
    {"/accounts/" + test_account + "/images/v1/a%2fb%20c", {}, "a/b c", "a%2Fb%20c"},
    // Needless escapes and sub-delims canonicalise to one form.
    {"/accounts/" + test_account + "/images/v1/%61bc", {}, "abc", "abc"},
    {"/accounts/" + test_account + "/images/v1/a!b", {}, "a!b", "a%21b"},
    {"/accounts/" + test_account + "/images/v1/a%21b", {}, "a!b", "a%21b"},
    {"/accounts/" + test_account + "/images/v1/caf%C3%A9", {}, "caf\xC3\xA9", "caf%C3%A9"},
    // Query strings are ignored; absolute-form never chooses the upstream.
    {"/accounts/" + test_account + "/images/v1/abc?x=1", {}, "abc", "abc"},
    {"http://evil.example/accounts/" + test_account + "/images/v1/abc", {}, "abc", "abc"},
    {"HTTPS://evil.example:8443/client/v4/accounts/" + test_account + "/images/v1/abc?q",
     {},
     "abc",
     "abc"},
    // Other target forms are refused (RFC 3986 gives `http://h?/…` and `http://h#/…` an empty
    // path: a proxy in front would see another request than the path after it).
    {"http://h?/client/v4/accounts/" + test_account + "/images/v1/abc", ig::errc::bad_request, "",
     ""},
    {"http://h#/client/v4/accounts/" + test_account + "/images/v1/abc", ig::errc::bad_request, "",
     ""},
    {"http://h", ig::errc::bad_request, "", ""},
    {"http://h?x", ig::errc::bad_request, "", ""},
    {"http:///accounts/" + test_account + "/images/v1/abc", ig::errc::bad_request, "", ""},
    {"http://user@h/accounts/" + test_account + "/images/v1/abc", ig::errc::bad_request, "", ""},
    {"ftp://h/accounts/" + test_account + "/images/v1/abc", ig::errc::bad_request, "", ""},
    {"h:443", ig::errc::bad_request, "", ""},
    {"/accounts/" + test_account + "/images/v1/abc#frag", ig::errc::bad_request, "", ""},
    // Custom ids sent as raw segments (TypeScript <= v6, Python, Go): the same id and key as
    // the %2F spelling, sent upstream as the segments.
    {"/accounts/" + test_account + "/images/v1/a/b", {}, "a/b", "a%2Fb", "a/b"},
    {"/client/v4/accounts/" + test_account + "/images/v1/folder/sub/x",
     {},
     "folder/sub/x",
     "folder%2Fsub%2Fx",
     "folder/sub/x"},
    {"/accounts/" + test_account + "/images/v1/f%6Flder/s%20b/x?q=1",
     {},
     "folder/s b/x",
     "folder%2Fs%20b%2Fx",
     "folder/s%20b/x"},
    {"/accounts/" + test_account + "/images/v1/a%2Fb/c", {}, "a/b/c", "a%2Fb%2Fc", "a%2Fb/c"},
    {"/accounts/" + test_account + "/images/v1/blob/x", {}, "blob/x", "blob%2Fx", "blob/x"},
    {"/accounts/" + test_account + "/images/v1/x/keys", {}, "x/keys", "x%2Fkeys", "x/keys"},
    {"/accounts/" + test_account + "/images/v1/" + repeat("s", "/", 64),
     {},
     repeat("s", "/", 64),
     repeat("s", "%2F", 64),
     repeat("s", "/", 64)},
    // Segments: a dot segment, a broken escape, too many segments, too long → bad id; an
    // empty segment → no id at all; reserved names however spelled → not an id.
    {"/accounts/" + test_account + "/images/v1/a/./b", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a/%2E%2E", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a/b%", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a/b%00", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a/%FF", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/" + repeat("s", "/", 65), ig::errc::invalid_image_id,
     "", ""},
    {"/accounts/" + test_account + "/images/v1/" + std::string(600, 'x') + "/" +
         std::string(600, 'x'),
     ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/" + std::string(1100, 'x') + "/%" +
         std::string(2100, 'x'),
     ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a//b", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/a/", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/a/b/blob", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/a/bl%6Fb", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/%6Beys/x", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/keys%2Fx", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/abc%2Fblob", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/stats/x", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/variants/a/b", ig::errc::route_not_found, "", ""},
    // Sibling endpoints and unknown paths.
    {"/accounts/" + test_account + "/images/v1/keys", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/stats", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/variants", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/variants/public", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/abc/blob", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1/%6Beys", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v2", ig::errc::route_not_found, "", ""},
    {"/accounts/" + test_account + "/images/v1", ig::errc::route_not_found, "", ""},
    {"/client/v4x/accounts/" + test_account + "/images/v1/abc", ig::errc::route_not_found, "", ""},
    {"/", ig::errc::route_not_found, "", ""},
    {"", ig::errc::bad_request, "", ""},
    {"*", ig::errc::bad_request, "", ""},
    // Account ids: 32 lowercase hex only.
    {"/accounts/023E105F4ECEF8AD9CA31A8372D0C353/images/v1/abc", ig::errc::invalid_account_id, "",
     ""},
    {"/accounts/023e105f/images/v1/abc", ig::errc::invalid_account_id, "", ""},
    {"/accounts/" + test_account + "0/images/v1/abc", ig::errc::invalid_account_id, "", ""},
    {"/accounts/g23e105f4ecef8ad9ca31a8372d0c353/images/v1/abc", ig::errc::invalid_account_id, "",
     ""},
    // Bad image ids.
    {"/accounts/" + test_account + "/images/v1/", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/.", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/..", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/%2E%2E", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a%", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a%2", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a%zz", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/%FF%FE", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/%C0%AF", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/%ED%A0%80", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a%00b", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/a%0Ab", ig::errc::invalid_image_id, "", ""},
    {"/accounts/" + test_account + "/images/v1/" + std::string(1025, 'x'),
     ig::errc::invalid_image_id, "", ""},
};

}  // namespace

BOOST_DATA_TEST_CASE(routes_image_targets, bdata::make(route_cases), c) {
    const auto r = gw::route_image(c.target);
    BOOST_TEST(r.error == c.error);
    if (c.error == ig::errc{}) {
        BOOST_TEST(r.image.account == test_account);
        BOOST_TEST(r.image.image_id == c.image_id);
        BOOST_TEST(r.image.canonical_id == c.canonical_id);
        BOOST_TEST(r.image.upstream_id == (c.upstream_id.empty() ? c.canonical_id : c.upstream_id));
    }
}

BOOST_AUTO_TEST_CASE(request_path_drops_scheme_authority_and_query) {
    BOOST_TEST(gw::request_path("/a/b?c=d") == "/a/b");
    BOOST_TEST(gw::request_path("http://h:1/a?b") == "/a");
    BOOST_TEST(gw::request_path("http://h/") == "/");
    // Not a served form: no path at all, so nothing downstream can act on one.
    BOOST_TEST(gw::request_path("http://h?/a").empty());
    BOOST_TEST(gw::request_path("http://h#/a").empty());
    BOOST_TEST(gw::request_path("*").empty());
}

BOOST_AUTO_TEST_CASE(longest_id_is_accepted) {
    const auto r =
        gw::route_image("/accounts/" + test_account + "/images/v1/" + std::string(1024, 'x'));
    BOOST_TEST(r.ok());
    BOOST_TEST(r.image.image_id.size() == 1024u);
}

BOOST_AUTO_TEST_CASE(canonical_form_is_a_fixed_point) {
    // Decoding then encoding the canonical form gives it back, for every byte value.
    std::string all;
    for (int c = 1; c < 256; ++c) {
        all.push_back(static_cast<char>(c));
    }
    const std::string enc = gw::percent_encode(all);
    std::string dec;
    BOOST_TEST(gw::percent_decode(enc, dec));
    BOOST_TEST(dec == all);
    BOOST_TEST(gw::percent_encode(dec) == enc);
}

BOOST_AUTO_TEST_CASE(utf8_validation) {
    BOOST_TEST(gw::is_valid_utf8("plain"));
    BOOST_TEST(gw::is_valid_utf8("\xF0\x9F\x98\x80"));   // U+1F600
    BOOST_TEST(!gw::is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
    BOOST_TEST(!gw::is_valid_utf8("\xE0\x80\xAF"));      // overlong
    BOOST_TEST(!gw::is_valid_utf8("\xC3"));              // truncated
}

// The view-based router decides exactly like route_image, and its key is the stored key.
BOOST_DATA_TEST_CASE(view_routing_agrees_with_route_image, bdata::make(route_cases), c) {
    const auto t = gw::parse_image_target(c.target);
    BOOST_TEST(t.error == c.error);
    if (c.error == ig::errc{}) {
        BOOST_TEST(t.account() == test_account);
        BOOST_TEST(t.image_id() == c.image_id);
        BOOST_TEST(t.canonical_id() == c.canonical_id);
        BOOST_TEST(t.upstream_id() == (c.upstream_id.empty() ? c.canonical_id : c.upstream_id));
        BOOST_TEST((t.key() == ig::cache::key(test_account, c.canonical_id).view()));
        // A copy re-derives its views from its own strings.
        const gw::image_target copy = t;
        BOOST_TEST(copy.canonical_id() == c.canonical_id);
        BOOST_TEST((copy.to_route() == gw::route_image(c.target).image));
    }
}
