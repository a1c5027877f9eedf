// The admin query, the command line and the progress view of warming: pure, table-driven.
#include "gateway/warm/api.hpp"
#include "gateway/warm/cli.hpp"
#include "gateway/warm/warmer.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>

namespace warm = imagegate::warm;
namespace bdata = boost::unit_test::data;

namespace {

const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";

struct query_case {
    std::string query;
    bool ok;
    std::optional<std::size_t> per_page{};
    std::string resume_from{};
    bool restart = false;
};
std::ostream& operator<<(std::ostream& os, const query_case& c) { return os << c.query; }

const query_case queries[] = {
    {"account=" + account, true},  // no per_page: a resumed job keeps its own
    {"account=" + account + "&per_page=10000&resume_from=abc_1&restart=1", true, 10000, "abc_1",
     true},
    {"per_page=10&account=" + account + "&", true, 10},
    {"", false},
    {"account=" + account + "&account=" + account, false},
    {"account=" + account.substr(1), false},
    {"account=" + account + "&per_page=9", false},
    {"account=" + account + "&per_page=10001", false},
    {"account=" + account + "&per_page=1e3", false},
    {"account=" + account + "&per_page=", false},
    {"account=" + account + "&resume_from=a%26b", false},
    {"account=" + account + "&restart=yes", false},
    {"account=" + account + "&sort_order=desc", false},
};

struct cli_case {
    std::vector<std::string> args;
    bool ok;
};
std::ostream& operator<<(std::ostream& os, const cli_case& c) {
    for (const auto& a : c.args) {
        os << a << ' ';
    }
    return os;
}

const cli_case clis[] = {
    {{"--account", account}, true},
    {{"--account", account, "--admin", "http://10.0.0.1:9091/", "--per-page", "500"}, true},
    {{"--account", account, "--admin", "http://[::1]:9090", "--restart"}, true},
    {{"--account", account, "--resume-from", "tok"}, true},
    {{}, false},
    {{"--account"}, false},
    {{"--account", "x"}, false},
    {{"--account", account, "--admin", "https://h:1"}, false},
    {{"--account", account, "--admin", "http://h"}, false},
    {{"--account", account, "--per-page", "5"}, false},
    {{"--account", account, "--per-page", "12x"}, false},
    {{"--account", account, "--resume-from", "a b"}, false},
    {{"--account", account, "--bogus"}, false},
};

}  // namespace

BOOST_DATA_TEST_CASE(parses_the_admin_query, bdata::make(queries), c) {
    const auto q = warm::parse_warm_query(c.query, true);
    BOOST_TEST(q.error.empty() == c.ok);
    if (c.ok) {
        BOOST_TEST(q.account == account);
        BOOST_TEST((q.per_page == c.per_page));
        BOOST_TEST(q.resume_from == c.resume_from);
        BOOST_TEST(q.restart == c.restart);
    }
}

BOOST_DATA_TEST_CASE(parses_the_command_line, bdata::make(clis), c) {
    const auto o = warm::parse_cli(c.args);
    BOOST_TEST(o.error.empty() == c.ok);
}

BOOST_AUTO_TEST_CASE(the_admin_url_names_host_and_port) {
    const auto o = warm::parse_cli({"--account", account, "--admin", "http://[::1]:9091"});
    BOOST_TEST(o.admin_host == "::1");
    BOOST_TEST(o.admin_port == "9091");
}

// The progress view reads back what the route renders.
BOOST_AUTO_TEST_CASE(progress_round_trips_and_draws_rate_and_eta) {
    warm::job_progress p;
    p.account = account;
    p.state = warm::job_state::waiting;
    p.pages = 3;
    p.stored = 2500;
    p.invalid = 2;
    p.refused = 7;
    p.total = 10000;
    p.rate = 500;
    p.position = "abc";
    p.last_error = "upstream 429: \"paused\"";
    const std::string body = warm::progress_json({p});
    const auto j = warm::find_job(body, account);
    BOOST_TEST_REQUIRE(j.has_value());
    BOOST_TEST(j->state == "waiting");
    BOOST_TEST(j->stored == 2500u);
    BOOST_TEST(j->total.value_or(0) == 10000u);
    BOOST_TEST(j->refused == 7u);
    BOOST_TEST(j->last_error == p.last_error);
    BOOST_TEST(!warm::find_job(body, "ffffffffffffffffffffffffffffffff"));
    const std::string line = warm::progress_line(*j, true);
    BOOST_TEST(line.find("[#######-----------------------]  25% 2500/10000 images") == 0u);
    BOOST_TEST(line.find("500/s, ETA 15s") != std::string::npos);
    BOOST_TEST(line.find("2 invalid") != std::string::npos);
    BOOST_TEST(line.find("(waiting: upstream 429") != std::string::npos);
    // Without a total: counts and rate, no bar and no ETA.
    auto unknown = *j;
    unknown.total.reset();
    unknown.state = "running";
    BOOST_TEST(warm::progress_line(unknown, true) == "2500 images, 3 pages, 500/s, 2 invalid");
}

BOOST_AUTO_TEST_CASE(rate_is_images_per_second_of_the_run) {
    using namespace std::chrono_literals;
    BOOST_TEST(warm::per_second(1000, 2s) == 500.0);
    BOOST_TEST(warm::per_second(1000, 0s) == 0.0);
    BOOST_TEST(warm::per_second(0, 5s) == 0.0);
}
