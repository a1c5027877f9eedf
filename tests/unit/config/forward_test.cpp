// [forward] and the forward grants of client keys: defaults, every source's spelling of
// anonymous_methods, what is refused at load, and the path rules the authorizer relies on.
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include "config/forward.hpp"
#include "config/keys.hpp"
#include "config/load.hpp"
#include "tests/unit/config/temp_dir.hpp"
#include "tests/unit/config/test_support.hpp"

using namespace imagegate::config;
using namespace imagegate::config::test;

namespace {

const std::string hash_a(64, 'a');
const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";
const std::string other = "11111111111111111111111111111111";

std::string key_entry(const std::string& accounts, const std::string& extra) {
    return "[[auth.client_keys]]\nsha256 = \"" + hash_a + "\"\naccounts = " + accounts + "\n" +
           extra;
}

struct path_case {
    std::string_view path;
    bool escapes;
};
std::ostream& operator<<(std::ostream& os, const path_case& c) { return os << c.path; }

const path_case path_cases[] = {
    {"/accounts/a/images/v1/x", false},
    {"/accounts/a/images/v1/folder%2Fsub%2Fx", false},
    {"/accounts/a/images/v1/x.jpg", false},
    {"/accounts/a/images/v1/...", false},
    {"/accounts/a/images/v1/.x", false},
    {"/accounts/a/../b/images", true},
    {"/accounts/a/./images", true},
    {"/accounts/a/images/..", true},
    {"/accounts/a/%2e%2e/b", true},
    {"/accounts/a/%2E./b", true},
    {"/accounts/a/x%2F..%2Fb", true},
    {"/accounts/a/x%5C..%5Cb", true},
    {"/accounts/a\\..\\b", true},
    {"/accounts/a/%252e%252e/b", true},
    {"/accounts/a/%25252e%25252e/b", true},
    {"/accounts/a/%0a", true},
    {"/accounts/a/\x01", true},
    {"/accounts/a/%zz", false},
    {"/accounts/a/100%", false},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(forward_config)

BOOST_AUTO_TEST_CASE(defaults_fit_a_10_mb_upload_and_grant_nothing) {
    const settings s;
    BOOST_TEST(s.forward.max_body_bytes == 10551296u);
    BOOST_TEST(s.forward.body_timeout.count() == 60000);
    BOOST_TEST(s.forward.anonymous_methods.empty());
    const auto r = run({});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(describe(r.value).find("forward.anonymous_methods = []\n") != std::string::npos);
    BOOST_TEST(describe(r.value).find("forward.max_body_bytes = \"10304KiB\"\n") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(anonymous_methods_from_each_source) {
    const temp_dir dir;
    auto r = run({"--config", dir.write("c.toml",
                                        "[forward]\nanonymous_methods = [\"GET\", "
                                        "\"HEAD\"]\nbody_timeout = \"2m\"\n")});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST((r.value.forward.anonymous_methods == std::vector<std::string>{"GET", "HEAD"}));
    BOOST_TEST(r.value.forward.body_timeout.count() == 120000);

    r = run({}, {{"IMAGEGATE_FORWARD_ANONYMOUS_METHODS", " GET , PATCH "},
                 {"IMAGEGATE_FORWARD_MAX_BODY_BYTES", "1MiB"}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST((r.value.forward.anonymous_methods == std::vector<std::string>{"GET", "PATCH"}));
    BOOST_TEST(r.value.forward.max_body_bytes == mib);

    r = run({}, {{"IMAGEGATE_FORWARD_ANONYMOUS_METHODS", ""}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.forward.anonymous_methods.empty());
}

BOOST_AUTO_TEST_CASE(bad_anonymous_methods_are_refused) {
    const temp_dir dir;
    for (const std::string value :
         {"[\"get\"]", "[\"OPTIONS\"]", "[\"GET\", \"GET\"]", "\"GET\"", "[1]"}) {
        const auto r = run(
            {"--config", dir.write("c.toml", "[forward]\nanonymous_methods = " + value + "\n")});
        BOOST_TEST(find_error(r.errors, "forward.anonymous_methods") != nullptr,
                   value << ": " << dump(r.errors));
    }
    const auto r = run({}, {{"IMAGEGATE_FORWARD_ANONYMOUS_METHODS", "GET,,HEAD"}});
    BOOST_TEST(find_error(r.errors, "IMAGEGATE_FORWARD_ANONYMOUS_METHODS") != nullptr);
}

BOOST_AUTO_TEST_CASE(anonymous_methods_are_a_token_mode_grant) {
    const auto r = run({}, {{"IMAGEGATE_AUTH_MODE", "passthrough"},
                            {"IMAGEGATE_FORWARD_ANONYMOUS_METHODS", "GET"}});
    BOOST_TEST(find_error(r.errors, "forward.anonymous_methods") != nullptr, dump(r.errors));
}

BOOST_AUTO_TEST_CASE(client_key_grants_are_read) {
    const temp_dir dir;
    const auto r = run(
        {"--config", dir.write("c.toml", key_entry("[\"" + account + "\"]",
                                                   "forward = [\"GET\", \"PATCH\", \"DELETE\"]\n"
                                                   "forward_prefixes = [\"/accounts/" +
                                                       account + "/images/\"]\n"))});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST_REQUIRE(r.value.auth.client_keys.size() == 1u);
    const auto& key = r.value.auth.client_keys[0];
    BOOST_TEST((key.forward == std::vector<std::string>{"GET", "PATCH", "DELETE"}));
    BOOST_TEST(
        (key.forward_prefixes == std::vector<std::string>{"/accounts/" + account + "/images/"}));
}

BOOST_AUTO_TEST_CASE(keys_file_entries_carry_grants) {
    const temp_dir dir;
    const auto keys = dir.write("keys.toml", "[[client_keys]]\nsha256 = \"" + hash_a +
                                                 "\"\naccounts = [\"*\"]\nforward = [\"POST\"]\n"
                                                 "forward_prefixes = [\"/zones/\"]\n");
    const auto r = run({}, {{"IMAGEGATE_AUTH_KEYS_FILE", keys}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST_REQUIRE(r.value.auth.client_keys.size() == 1u);
    BOOST_TEST((r.value.auth.client_keys[0].forward == std::vector<std::string>{"POST"}));
    BOOST_TEST(
        (r.value.auth.client_keys[0].forward_prefixes == std::vector<std::string>{"/zones/"}));
}

struct bad_grant {
    std::string accounts;
    std::string extra;
    std::string key;  // the error expected
};
std::ostream& operator<<(std::ostream& os, const bad_grant& c) { return os << c.extra; }

const bad_grant bad_grants[] = {
    {"[\"*\"]", "forward = [\"patch\"]\n", "auth.client_keys.forward"},
    {"[\"*\"]", "forward = [\"TRACE\"]\n", "auth.client_keys.forward"},
    {"[\"*\"]", "forward = \"GET\"\n", "auth.client_keys.forward"},
    {"[\"*\"]", "forward = [\"GET\", \"GET\"]\n", "auth.client_keys.forward"},
    {"[\"*\"]", "forward = [\"GET\"]\nforward_prefixes = [\"accounts/\"]\n",
     "auth.client_keys.forward_prefixes"},
    {"[\"*\"]", "forward = [\"GET\"]\nforward_prefixes = [\"/accounts/../x/\"]\n",
     "auth.client_keys.forward_prefixes"},
    {"[\"*\"]", "forward = [\"GET\"]\nforward_prefixes = [\"/a?b\"]\n",
     "auth.client_keys.forward_prefixes"},
    {"[\"*\"]", "forward = [\"GET\"]\nforward_prefixes = [\"/a b\"]\n",
     "auth.client_keys.forward_prefixes"},
    {"[\"*\"]", "forward = [\"GET\"]\nforward_prefixes = [\"/" + std::string(600, 'a') + "\"]\n",
     "auth.client_keys.forward_prefixes"},
    // Prefixes limit a grant, so without methods they are a mistake.
    {"[\"*\"]", "forward_prefixes = [\"/zones/\"]\n", "auth.client_keys.forward_prefixes"},
    // A key limited to accounts forwards only under them.
    {"[\"" + account + "\"]",
     "forward = [\"GET\"]\nforward_prefixes = [\"/accounts/" + other + "/images/\"]\n",
     "auth.client_keys.forward_prefixes"},
    {"[\"" + account + "\"]",
     "forward = [\"GET\"]\nforward_prefixes = [\"/accounts/" + account + "0/\"]\n",
     "auth.client_keys.forward_prefixes"},
    {"[\"" + account + "\"]", "forward = [\"GET\"]\nforward_prefixes = [\"/zones/\"]\n",
     "auth.client_keys.forward_prefixes"},
};

BOOST_DATA_TEST_CASE(bad_grants_are_refused_at_load, boost::unit_test::data::make(bad_grants), c) {
    const temp_dir dir;
    const auto r = run({"--config", dir.write("c.toml", key_entry(c.accounts, c.extra))});
    BOOST_TEST(find_error(r.errors, c.key) != nullptr, dump(r.errors));
}

BOOST_AUTO_TEST_CASE(too_many_prefixes_are_refused) {
    std::string list = "[";
    for (std::size_t i = 0; i <= max_forward_prefixes; ++i) {
        list += (i == 0 ? "\"/p" : ", \"/p") + std::to_string(i) + "/\"";
    }
    const temp_dir dir;
    const auto r = run({"--config", dir.write("c.toml", key_entry("[\"*\"]",
                                                                  "forward = [\"GET\"]\n"
                                                                  "forward_prefixes = " +
                                                                      list + "]\n"))});
    BOOST_TEST(find_error(r.errors, "auth.client_keys.forward_prefixes") != nullptr,
               dump(r.errors));
}

BOOST_AUTO_TEST_CASE(print_config_reads_back) {
    settings s;
    s.forward.anonymous_methods = {"GET", "DELETE"};
    s.forward.max_body_bytes = 5 * mib;
    settings back;
    const auto errors = apply_toml(to_toml(s), "printed", back);
    BOOST_TEST(errors.empty(), dump(errors));
    BOOST_TEST((back.forward == s.forward));
    BOOST_TEST(changed_keys(s, back).empty());
    BOOST_TEST((changed_keys(settings{}, s) ==
                std::vector<std::string>{"forward.max_body_bytes", "forward.anonymous_methods"}));
}

BOOST_DATA_TEST_CASE(paths_that_may_escape, boost::unit_test::data::make(path_cases), c) {
    BOOST_TEST(path_may_escape(c.path) == c.escapes);
}

BOOST_AUTO_TEST_CASE(within_a_prefix_means_at_a_segment_boundary) {
    BOOST_TEST(path_within("/accounts/a/images", "/accounts/a"));
    BOOST_TEST(path_within("/accounts/a", "/accounts/a"));
    BOOST_TEST(!path_within("/accounts/ab/images", "/accounts/a"));
    BOOST_TEST(path_within("/accounts/a/images/v1", "/accounts/a/images/"));
    BOOST_TEST(!path_within("/accounts/a/images", "/accounts/a/images/"));
    BOOST_TEST(path_within("/accounts/a/images/v1x", "/accounts/a/images/v1x"));
    BOOST_TEST(!path_within("/accounts/a/images/v1x", "/accounts/a/images/v1"));
}

BOOST_AUTO_TEST_SUITE_END()
