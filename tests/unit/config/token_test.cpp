// The upstream token: precedence, the token-file permission check, and that the token never
// appears in an error or in describe().
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <ostream>

#include "config/load.hpp"
#include "temp_dir.hpp"
#include "test_support.hpp"

namespace bdata = boost::unit_test::data;
namespace fs = std::filesystem;
using namespace imagegate::config;
using namespace imagegate::config::test;

namespace {

constexpr std::string_view token = "cf-TOKEN-0123456789abcdef";

/// A token file's mode and whether load_token() accepts it.
struct mode_row {
    fs::perms mode;
    bool accepted;
};

std::ostream& operator<<(std::ostream& os, const mode_row& r) {
    return os << std::oct << static_cast<unsigned>(r.mode) << std::dec
              << (r.accepted ? " accepted" : " refused");
}

constexpr auto rw = fs::perms::owner_read | fs::perms::owner_write;

const std::vector<mode_row> mode_rows{
    // owner only
    {rw, true},
    {fs::perms::owner_read, true},
    {fs::perms::owner_all, true},
    // group or others may read or write
    {rw | fs::perms::group_read, false},
    {rw | fs::perms::group_write, false},
    {rw | fs::perms::others_read, false},
    {rw | fs::perms::others_write, false},
    {rw | fs::perms::group_read | fs::perms::others_read, false},
    // execute bits count too: 077 is the rule
    {rw | fs::perms::others_exec, false},
};

settings with_token_file(const std::string& path) {
    settings s;
    s.upstream.token_file = path;
    return s;
}

bool mentions_token(const std::vector<config_error>& errors) {
    for (const auto& e : errors) {
        if (e.key.find(token) != std::string::npos || e.reason.find(token) != std::string::npos) {
            return true;
        }
    }
    return false;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(token_source)

BOOST_AUTO_TEST_CASE(unset_everywhere_is_not_an_error) {
    settings s;
    const auto errors = load_token(lookup({}), s);
    BOOST_TEST(errors.empty(), dump(errors));
    BOOST_TEST(s.secret.upstream_token.empty());
}

BOOST_AUTO_TEST_CASE(env_wins_over_the_file_unless_empty) {
    const temp_dir dir;
    const auto file = dir.write("token", "from-file\n");
    // (CLOUDFLARE_API_TOKEN, expected token)
    for (const auto& [env, expected] : {std::pair{" from-env\n", "from-env"}, {"", "from-file"}}) {
        BOOST_TEST_CONTEXT("CLOUDFLARE_API_TOKEN=\"" << env << '"') {
            auto s = with_token_file(file);
            const auto errors = load_token(lookup({{"CLOUDFLARE_API_TOKEN", env}}), s);
            BOOST_TEST(errors.empty(), dump(errors));
            BOOST_TEST(s.secret.upstream_token == expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(first_line_trimmed) {
    const temp_dir dir;
    auto s = with_token_file(dir.write("token", "  " + std::string(token) + " \r\nsecond line\n"));
    const auto errors = load_token(lookup({}), s);
    BOOST_TEST(errors.empty(), dump(errors));
    BOOST_TEST(s.secret.upstream_token == token);
}

BOOST_AUTO_TEST_CASE(empty_file_gives_an_empty_token) {
    const temp_dir dir;
    auto s = with_token_file(dir.write("token", ""));
    BOOST_TEST(load_token(lookup({}), s).empty());
    BOOST_TEST(s.secret.upstream_token.empty());
}

BOOST_DATA_TEST_CASE(file_mode, bdata::make(mode_rows), row) {
    const temp_dir dir;
    const auto path = dir.write("token", std::string(token) + "\n", row.mode);
    auto s = with_token_file(path);
    const auto errors = load_token(lookup({}), s);
    if (row.accepted) {
        BOOST_TEST(errors.empty(), dump(errors));
        BOOST_TEST(s.secret.upstream_token == token);
    } else {
        BOOST_REQUIRE(errors.size() == 1U);
        BOOST_TEST(errors[0].key == "upstream.token_file");
        BOOST_TEST(errors[0].reason.find(path) != std::string::npos, errors[0].reason);
        BOOST_TEST(errors[0].reason.find("chmod 600") != std::string::npos, errors[0].reason);
        BOOST_TEST(!mentions_token(errors));
        BOOST_TEST(s.secret.upstream_token.empty());
    }
}

BOOST_AUTO_TEST_CASE(symlink_to_a_private_file) {
    const temp_dir dir;
    const auto target = dir.write("real", std::string(token));
    fs::create_symlink(target, dir.path() / "link");
    auto s = with_token_file((dir.path() / "link").string());
    const auto errors = load_token(lookup({}), s);
    BOOST_TEST(errors.empty(), dump(errors));
    BOOST_TEST(s.secret.upstream_token == token);
}

BOOST_AUTO_TEST_CASE(unusable_files) {
    const temp_dir dir;
    const auto big = dir.write("big", std::string(64 * 1024 + 1, 'a'));
    const auto spaced = dir.write("spaced", std::string(token) + " extra\n");
    const auto control = dir.write("control", std::string(token) + "\x01\n");
    for (const auto& path :
         {(dir.path() / "missing").string(), dir.path().string(), big, spaced, control}) {
        BOOST_TEST_CONTEXT(path) {
            auto s = with_token_file(path);
            const auto errors = load_token(lookup({}), s);
            BOOST_REQUIRE(errors.size() == 1U);
            BOOST_TEST(errors[0].key == "upstream.token_file");
            BOOST_TEST(errors[0].reason.find(path) != std::string::npos, errors[0].reason);
            BOOST_TEST(!mentions_token(errors));
            BOOST_TEST(s.secret.upstream_token.empty());
        }
    }
}

BOOST_AUTO_TEST_CASE(file_of_64_kib_is_accepted) {
    const temp_dir dir;
    auto s = with_token_file(dir.write(
        "token", std::string(token) + "\n" + std::string(64 * 1024 - token.size() - 1, '#')));
    BOOST_TEST(load_token(lookup({}), s).empty());
    BOOST_TEST(s.secret.upstream_token == token);
}

BOOST_AUTO_TEST_CASE(bad_env_token_is_not_echoed) {
    settings s;
    const auto errors =
        load_token(lookup({{"CLOUDFLARE_API_TOKEN", std::string(token) + "\r\nX-Evil: 1"}}), s);
    BOOST_REQUIRE(errors.size() == 1U);
    BOOST_TEST(errors[0].key == "CLOUDFLARE_API_TOKEN");
    BOOST_TEST(!mentions_token(errors));
    BOOST_TEST(s.secret.upstream_token.empty());
}

BOOST_AUTO_TEST_CASE(token_absent_from_errors_and_describe) {
    const temp_dir dir;
    const auto config = dir.write("c.toml", "[upstream]\nurl = \"ftp://x\"\n[log]\nlevel = 3\n");
    const auto r =
        run({"--config", config, "--threads", "x"},
            {{"CLOUDFLARE_API_TOKEN", std::string(token)}, {"IMAGEGATE_CACHE_TTL", "never"}});
    BOOST_TEST(r.errors.size() == 4U, dump(r.errors));
    BOOST_TEST(!mentions_token(r.errors));
    BOOST_TEST(r.value.secret.upstream_token == token);
    const auto text = describe(r.value);
    BOOST_TEST(text.find(token) == std::string::npos);
    BOOST_TEST(text.find("upstream.token = <set>\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(token_file_layered_like_any_key) {
    const temp_dir dir;
    const auto path = dir.write("token", std::string(token));
    const auto r = run({}, {{"IMAGEGATE_UPSTREAM_TOKEN_FILE", path}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.secret.upstream_token == token);
}

BOOST_AUTO_TEST_SUITE_END()
