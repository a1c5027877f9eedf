// gateway/core/request_target.hpp: which request-target forms are served, and where their
// path starts (RFC 9112 §3.2, RFC 3986 §3).
#include "gateway/core/request_target.hpp"

#include <boost/test/unit_test.hpp>

#include <string_view>

namespace {

struct target_case {
    std::string_view target;
    std::size_t path_start;  // npos: refused
};

constexpr auto no = std::string_view::npos;

constexpr target_case cases[] = {
    // origin-form
    {"/", 0},
    {"/a/b?c=d", 0},
    {"//a", 0},
    // absolute-form with a path; scheme in any case; port; query after the path
    {"http://h/", 8},
    {"https://h:8443/a?b", 14},
    {"HTTP://H/a", 8},
    {"hTtPs://h/a", 9},
    // absolute-form without a path: the authority is followed by '?', '#' or nothing
    {"http://h", no},
    {"http://h?/a", no},
    {"http://h#/a", no},
    {"http://h:80?x", no},
    // empty authority, userinfo, other schemes, scheme-relative
    {"http:///a", no},
    {"http://u@h/a", no},
    {"http://u:p@h/a", no},
    {"ftp://h/a", no},
    {"http:/a", no},
    {"//h/a#", no},
    // asterisk-form, authority-form, empty, fragments anywhere
    {"*", no},
    {"h:443", no},
    {"", no},
    {"/a#b", no},
    {"/a?b#c", no},
};

}  // namespace

BOOST_AUTO_TEST_CASE(target_forms_table) {
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.target) {
            BOOST_TEST(imagegate::target_path_start(c.target) == c.path_start);
            BOOST_TEST(imagegate::is_supported_target(c.target) == (c.path_start != no));
        }
    }
}

// Usable at compile time: the rules are pure.
static_assert(imagegate::is_supported_target("/x"));
static_assert(!imagegate::is_supported_target("http://h?/x"));
