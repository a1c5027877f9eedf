// Layering (defaults < TOML < env < flags), the command line, TOML errors and check().
#include "config/load.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <functional>
#include <ostream>
#include <set>
#include <stdexcept>

#include "config/keys.hpp"
#include "temp_dir.hpp"
#include "test_support.hpp"

namespace bdata = boost::unit_test::data;
using namespace imagegate::config;
using namespace imagegate::config::test;
using namespace std::chrono_literals;

namespace {

/// Which sources set cache.ttl (file 1m, env 2m, flag 3m), and the value that must win.
struct precedence_row {
    bool file;
    bool env;
    bool flag;
    duration expected;
};

std::ostream& operator<<(std::ostream& os, const precedence_row& r) {
    return os << "file=" << r.file << " env=" << r.env << " flag=" << r.flag
              << " expected=" << r.expected.count() << "ms";
}

const std::vector<precedence_row> precedence_rows{
    // one source
    {false, false, false, 5min},
    {true, false, false, 1min},
    {false, true, false, 2min},
    {false, false, true, 3min},
    // the later source wins
    {true, true, false, 2min},
    {true, false, true, 3min},
    {false, true, true, 3min},
    {true, true, true, 3min},
};

/// A settings change and the one error key check() must report for it (empty: none).
struct check_row {
    std::string_view name;
    std::function<void(settings&)> change;
    std::string_view error_key;
};

std::ostream& operator<<(std::ostream& os, const check_row& r) { return os << r.name; }

const std::vector<check_row> check_rows{
    // server
    {"threads 1024 ok", [](settings& s) { s.server.threads = 1024; }, ""},
    {"threads 1025", [](settings& s) { s.server.threads = 1025; }, "server.threads"},
    {"header_timeout 0", [](settings& s) { s.server.header_timeout = 0ms; },
     "server.header_timeout"},
    {"idle_timeout 400 days", [](settings& s) { s.server.idle_timeout = 400 * 24h; },
     "server.idle_timeout"},
    {"max_header_bytes 512", [](settings& s) { s.server.max_header_bytes = 512; },
     "server.max_header_bytes"},
    {"max_header_bytes 2MiB", [](settings& s) { s.server.max_header_bytes = 2 * mib; },
     "server.max_header_bytes"},
    {"listen junk", [](settings& s) { s.server.listen = "8080"; }, "server.listen"},
    {"admin_listen equal to listen", [](settings& s) { s.server.admin_listen = s.server.listen; },
     "server.admin_listen"},
    {"both listeners on port 0 ok",
     [](settings& s) { s.server.listen = s.server.admin_listen = "127.0.0.1:0"; }, ""},
    // upstream
    {"url junk", [](settings& s) { s.upstream.url = "api.cloudflare.com"; }, "upstream.url"},
    {"http without allow_plaintext", [](settings& s) { s.upstream.url = "http://127.0.0.1:1"; },
     "upstream.url"},
    {"http with allow_plaintext ok",
     [](settings& s) {
         s.upstream.url = "http://127.0.0.1:1";
         s.upstream.allow_plaintext = true;
     },
     ""},
    {"ca_file missing", [](settings& s) { s.upstream.ca_file = "/nonexistent/ca.pem"; },
     "upstream.ca_file"},
    {"ca_file is a directory", [](settings& s) { s.upstream.ca_file = "/"; }, "upstream.ca_file"},
    {"connect_timeout 0", [](settings& s) { s.upstream.connect_timeout = 0ms; },
     "upstream.connect_timeout"},
    {"request_timeout 1h", [](settings& s) { s.upstream.request_timeout = 1h; },
     "upstream.request_timeout"},
    {"max_body_bytes 512", [](settings& s) { s.upstream.max_body_bytes = 512; },
     "upstream.max_body_bytes"},
    {"max_body_bytes 64MiB ok", [](settings& s) { s.upstream.max_body_bytes = 64 * mib; }, ""},
    {"max_body_bytes 65MiB", [](settings& s) { s.upstream.max_body_bytes = 65 * mib; },
     "upstream.max_body_bytes"},
    {"upstream max_connections 0", [](settings& s) { s.upstream.max_connections = 0; },
     "upstream.max_connections"},
    // cache
    {"shards 3", [](settings& s) { s.cache.shards = 3; }, "cache.shards"},
    {"shards 0", [](settings& s) { s.cache.shards = 0; }, "cache.shards"},
    {"shards 2048", [](settings& s) { s.cache.shards = 2048; }, "cache.shards"},
    {"shards 1 ok", [](settings& s) { s.cache.shards = 1; }, ""},
    {"max_entry_bytes over max_bytes",
     [](settings& s) { s.cache.max_entry_bytes = s.cache.max_bytes + 1; }, "cache.max_entry_bytes"},
    {"ttl 0", [](settings& s) { s.cache.ttl = 0ms; }, "cache.ttl"},
    {"stale_if_error 0 ok", [](settings& s) { s.cache.stale_if_error = 0ms; }, ""},
    // shield
    {"budget 0", [](settings& s) { s.shield.budget = 0; }, "shield.budget"},
    {"burst 0", [](settings& s) { s.shield.burst = 0; }, "shield.burst"},
    {"burst over budget", [](settings& s) { s.shield.burst = s.shield.budget + 1; },
     "shield.burst"},
    {"burst equal to budget ok", [](settings& s) { s.shield.burst = s.shield.budget; }, ""},
    // which waits bound which: queue wait + exchange <= the wait for a fetch
    {"queue wait under 1 s", [](settings& s) { s.shield.max_queue_wait = 999ms; },
     "shield.max_queue_wait"},
    {"coalesce shorter than queue + exchange",
     [](settings& s) { s.shield.coalesce_timeout = 19'999ms; }, "shield.coalesce_timeout"},
    {"coalesce shorter than a longer exchange",
     [](settings& s) { s.upstream.request_timeout = 21s; }, "shield.coalesce_timeout"},
    {"fleet tier on with the defaults ok",
     [](settings& s) { s.redis.url = "redis://127.0.0.1:6379"; }, ""},
    {"coalesce shorter than queue + exchange + fill lease",
     [](settings& s) {
         s.redis.url = "redis://127.0.0.1:6379";
         s.fleet.lease_timeout = 6s;
     },
     "shield.coalesce_timeout"},
    {"coalesce exactly queue + exchange ok",
     [](settings& s) {
         s.shield.max_queue_wait = 2s;
         s.upstream.request_timeout = 3s;
         s.shield.coalesce_timeout = 5s;
     },
     ""},
    {"no credentials", [](settings& s) { s.shield.max_credentials = 0; }, "shield.max_credentials"},
    // log
    {"level verbose", [](settings& s) { s.log.level = "verbose"; }, "log.level"},
    {"level off ok", [](settings& s) { s.log.level = "off"; }, ""},
    {"format xml", [](settings& s) { s.log.format = "xml"; }, "log.format"},
    {"format json ok", [](settings& s) { s.log.format = "json"; }, ""},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(layering)

BOOST_AUTO_TEST_CASE(no_sources_give_the_defaults) {
    const auto r = run({});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST((r.value == settings{}));
    BOOST_TEST(!r.show_help);
    BOOST_TEST(!r.check_only);
}

BOOST_DATA_TEST_CASE(toml_then_env_then_flags, bdata::make(precedence_rows), row) {
    const temp_dir dir;
    std::vector<std::string> args;
    fake_env env;
    if (row.file) {
        args = {"--config", dir.write("c.toml", "[cache]\nttl = \"1m\"\n")};
    }
    if (row.env) {
        env["IMAGEGATE_CACHE_TTL"] = "2m";
    }
    if (row.flag) {
        args.emplace_back("--ttl=3m");
    }
    const auto r = run(args, env);
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.cache.ttl.count() == row.expected.count());
}

BOOST_AUTO_TEST_CASE(sources_only_touch_what_they_name) {
    const temp_dir dir;
    const auto file =
        dir.write("c.toml", "[cache]\nmax_bytes = \"64MiB\"\n[log]\nformat = \"json\"\n");
    const auto r =
        run({"--config", file, "--threads", "4"}, {{"IMAGEGATE_SERVER_LISTEN", "127.0.0.2:8081"}});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    auto expected = settings{};
    expected.cache.max_bytes = 64 * mib;
    expected.log.format = "json";
    expected.server.listen = "127.0.0.2:8081";
    expected.server.threads = 4;
    BOOST_TEST((r.value == expected));
}

BOOST_AUTO_TEST_CASE(every_flag_sets_its_key) {
    const temp_dir dir;
    const auto ca = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
    const auto r = run({"--listen", "[::1]:1", "--admin-listen=[::1]:2", "--upstream",
                        "https://example.test/v4", "--upstream-ca", ca, "--threads=3",
                        "--cache-max-bytes", "2GiB", "--ttl", "90s", "--log-level", "debug"});
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.server.listen == "[::1]:1");
    BOOST_TEST(r.value.server.admin_listen == "[::1]:2");
    BOOST_TEST(r.value.upstream.url == "https://example.test/v4");
    BOOST_TEST(r.value.upstream.ca_file == ca);
    BOOST_TEST(r.value.server.threads == 3U);
    BOOST_TEST(r.value.cache.max_bytes == 2048 * mib);
    BOOST_TEST(r.value.cache.ttl.count() == 90'000);
    BOOST_TEST(r.value.log.level == "debug");
}

BOOST_AUTO_TEST_CASE(env_spelling_of_each_kind) {
    fake_env env{
        {"IMAGEGATE_UPSTREAM_ALLOW_PLAINTEXT", "1"},
        {"IMAGEGATE_UPSTREAM_URL", "http://127.0.0.1:8081"},
        {"IMAGEGATE_SHIELD_HONOR_CLIENT_NO_CACHE", "true"},
        {"IMAGEGATE_LOG_ACCESS_LOG", "0"},
        {"IMAGEGATE_CACHE_MAX_BYTES", "64MiB"},
        {"IMAGEGATE_CACHE_MAX_ENTRY_BYTES", "65536"},
        {"IMAGEGATE_UPSTREAM_POOL_IDLE_TIMEOUT", "1h30m"},
    };
    const auto r = run({}, env);
    BOOST_TEST(r.errors.empty(), dump(r.errors));
    BOOST_TEST(r.value.upstream.allow_plaintext);
    BOOST_TEST(r.value.shield.honor_client_no_cache);
    BOOST_TEST(!r.value.log.access_log);
    BOOST_TEST(r.value.cache.max_bytes == 64 * mib);
    BOOST_TEST(r.value.cache.max_entry_bytes == 64 * kib);
    BOOST_TEST(r.value.upstream.pool_idle_timeout.count() == 5'400'000);
    // The names are derived from the table: one per key, all distinct.
    std::set<std::string> names;
    for (const auto& key : keys()) {
        names.insert(key.env_name());
    }
    BOOST_TEST(names.size() == keys().size());
    BOOST_TEST(names.count("IMAGEGATE_UPSTREAM_MAX_REQUESTS_PER_CONNECTION") == 1U);
}

BOOST_AUTO_TEST_CASE(env_errors_name_the_variable) {
    const auto r = run({}, {{"IMAGEGATE_CACHE_TTL", "5"},
                            {"IMAGEGATE_LOG_ACCESS_LOG", "yes"},
                            {"IMAGEGATE_SERVER_THREADS", "-1"}});
    BOOST_TEST(keys_of(r.errors) ==
                   (std::vector<std::string>{"IMAGEGATE_SERVER_THREADS", "IMAGEGATE_CACHE_TTL",
                                             "IMAGEGATE_LOG_ACCESS_LOG"}),
               boost::test_tools::per_element());
    BOOST_TEST((r.value.cache.ttl == settings{}.cache.ttl));
}

BOOST_AUTO_TEST_CASE(a_rejected_value_keeps_the_lower_layer) {
    const temp_dir dir;
    const auto file = dir.write("c.toml", "[cache]\nttl = \"1m\"\n");
    const auto r = run({"--config", file, "--ttl", "soon"});
    BOOST_TEST(keys_of(r.errors) == std::vector<std::string>{"--ttl"},
               boost::test_tools::per_element());
    BOOST_TEST(r.value.cache.ttl.count() == 60'000);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(command_line_flags)

BOOST_AUTO_TEST_CASE(both_value_spellings) {
    const auto a = parse_command_line(std::vector<std::string>{"--threads", "8"});
    const auto b = parse_command_line(std::vector<std::string>{"--threads=8"});
    BOOST_TEST(a.errors.empty());
    BOOST_TEST(b.errors.empty());
    BOOST_REQUIRE(a.assignments.size() == 1U);
    BOOST_REQUIRE(b.assignments.size() == 1U);
    BOOST_TEST(a.assignments[0].key == "server.threads");
    BOOST_TEST(a.assignments[0].value == "8");
    BOOST_TEST(b.assignments[0].value == "8");
}

BOOST_AUTO_TEST_CASE(mistakes_are_errors) {
    const auto r = run({"stray", "--token", "abc", "--threads", "many", "--check-config=yes",
                        "--bogus=1", "--ttl", "--log-level"});
    // "abc" after the unknown --token is a stray argument too: an unknown flag's arity is unknown.
    BOOST_TEST(keys_of(r.errors) ==
                   (std::vector<std::string>{"stray", "--token", "abc", "--check-config", "--bogus",
                                             "--ttl", "--log-level", "--threads"}),
               boost::test_tools::per_element());
    BOOST_TEST(find_error(r.errors, "--ttl")->reason.find("missing value") != std::string::npos);
    BOOST_TEST(find_error(r.errors, "--token")->reason.find("unknown flag") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(check_config_sets_check_only) {
    const auto r = run({"--check-config"});
    BOOST_TEST(r.check_only);
    BOOST_TEST(!r.show_help);
    BOOST_TEST(r.errors.empty(), dump(r.errors));
}

BOOST_AUTO_TEST_CASE(help_stops_before_loading) {
    for (const auto* flag : {"--help", "-h"}) {
        const auto r = run({flag, "--config", "/nonexistent/imagegate.toml"});
        BOOST_TEST(r.show_help);
        BOOST_TEST(r.errors.empty(), dump(r.errors));
    }
}

BOOST_AUTO_TEST_CASE(help_lists_every_flag_with_default) {
    const auto help = help_text();
    for (const auto* flag :
         {"--config FILE", "--listen HOST:PORT", "--admin-listen HOST:PORT", "--upstream URL",
          "--upstream-ca FILE", "--threads N", "--cache-max-bytes SIZE", "--ttl DURATION",
          "--log-level LEVEL", "--check-config", "-h, --help", "CLOUDFLARE_API_TOKEN",
          "IMAGEGATE_"}) {
        BOOST_TEST(help.find(flag) != std::string::npos, flag);
    }
    for (const auto* default_value : {"127.0.0.1:8080", "127.0.0.1:9090",
                                      "https://api.cloudflare.com/client/v4", "256MiB", "5m"}) {
        BOOST_TEST(help.find(default_value) != std::string::npos, default_value);
    }
    BOOST_TEST(help.find("--token") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(exceptions_become_errors) {
    const env_lookup throwing = [](std::string_view) -> std::optional<std::string> {
        throw std::runtime_error("lookup failed");
    };
    const std::vector<std::string> args;
    const auto r = load(args, throwing);
    BOOST_TEST(find_error(r.errors, "environment") != nullptr, dump(r.errors));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(toml_file)

BOOST_AUTO_TEST_CASE(all_errors_at_once) {
    settings s;
    const auto errors = apply_toml(
        "[server]\n"
        "threads = \"four\"\n"
        "[cache]\n"
        "ttl = 300\n"
        "max_bytes = -1\n",
        "bad.toml", s);
    BOOST_TEST(keys_of(errors) ==
                   (std::vector<std::string>{"server.threads", "cache.ttl", "cache.max_bytes"}),
               boost::test_tools::per_element());
    BOOST_TEST(
        find_error(errors, "server.threads")->reason.find("bad.toml:2:11") != std::string::npos,
        dump(errors));
    BOOST_TEST(find_error(errors, "cache.ttl")->reason.find("duration") != std::string::npos);
    BOOST_TEST((s == settings{}));
}

BOOST_AUTO_TEST_CASE(all_errors_at_once_through_load) {
    const temp_dir dir;
    const auto file = dir.write("bad.toml",
                                "[server]\nlisten = \"nowhere\"\n"
                                "[shield]\nbudget = 0\n"
                                "[log]\nlevel = \"loud\"\n");
    const auto r = run({"--config", file});
    BOOST_TEST(keys_of(r.errors) ==
                   (std::vector<std::string>{"server.listen", "shield.budget", "log.level"}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(unknown_sections_and_keys) {
    settings s;
    const auto errors = apply_toml(
        "version = 1\n"
        "[server]\n"
        "listn = \"127.0.0.1:1\"\n"
        "[server.tls]\n"
        "cert = \"x\"\n"
        "[memcached]\n"
        "url = \"memcached://x\"\n",
        "u.toml", s);
    BOOST_TEST(keys_of(errors) ==
                   (std::vector<std::string>{"version", "server.listn", "server.tls", "memcached"}),
               boost::test_tools::per_element());
    BOOST_TEST(find_error(errors, "server.listn")->reason.find("u.toml:3:1") != std::string::npos,
               dump(errors));
}

/// Names that are not bare TOML keys: how the error names them (found by config_fuzz: an
/// empty quoted table name produced an error with an empty key).
struct odd_name_row {
    std::string toml;
    std::string key;
};

std::ostream& operator<<(std::ostream& os, const odd_name_row& row) { return os << row.toml; }

const std::vector<odd_name_row> odd_name_rows = {
    {"[\"\"]\n", "\"\""},
    {"\"\" = 1\n", "\"\""},
    {"[\"a.b\"]\n", "\"a.b\""},
    {"[\"ser ver\"]\n", "\"ser ver\""},
    {"[\"x\\u0007y\"]\n", "\"x\\u0007y\""},
    {"[\"q\\\"\\\\\"]\n", "\"q\\\"\\\\\""},
    {"[server]\n\"\" = 1\n", "server.\"\""},
    {"[server]\n\"li\\nsten\" = 1\n", "server.\"li\\u000Asten\""},
    {"[auth]\n[[auth.client_keys]]\n\"\" = 1\n", "auth.client_keys.\"\""},
};

BOOST_DATA_TEST_CASE(odd_names_are_quoted_in_errors, bdata::make(odd_name_rows), row) {
    settings s;
    const auto errors = apply_toml(row.toml, "n.toml", s);
    BOOST_TEST_REQUIRE(!errors.empty(), row.toml);
    BOOST_TEST(errors.front().key == row.key, dump(errors));
    BOOST_TEST(!errors.front().reason.empty());
}

BOOST_AUTO_TEST_CASE(wrong_types) {
    settings s;
    const auto errors = apply_toml(
        "[server]\n"
        "listen = 8080\n"
        "max_header_bytes = 1.5\n"
        "[upstream]\n"
        "allow_plaintext = \"true\"\n"
        "max_connections = \"64\"\n"
        "[cache]\n"
        "ttl = 5\n"
        "shards = [16]\n",
        "t.toml", s);
    BOOST_TEST(keys_of(errors) ==
                   (std::vector<std::string>{"server.listen", "server.max_header_bytes",
                                             "upstream.allow_plaintext", "upstream.max_connections",
                                             "cache.ttl", "cache.shards"}),
               boost::test_tools::per_element());
    BOOST_TEST(find_error(errors, "cache.ttl")->reason.find("got an integer") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(sizes_as_strings_or_integers) {
    settings s;
    const auto errors =
        apply_toml("[cache]\nmax_bytes = 1048576\nmax_entry_bytes = \"64KB\"\n", "s.toml", s);
    BOOST_TEST(errors.empty(), dump(errors));
    BOOST_TEST(s.cache.max_bytes == mib);
    BOOST_TEST(s.cache.max_entry_bytes == 64'000U);
}

BOOST_AUTO_TEST_CASE(out_of_range_in_file) {
    settings s;
    const auto errors = apply_toml(
        "[server]\nthreads = 5000\n[upstream]\nmax_body_bytes = \"1GiB\"\n", "r.toml", s);
    BOOST_TEST(
        keys_of(errors) == (std::vector<std::string>{"server.threads", "upstream.max_body_bytes"}),
        boost::test_tools::per_element());
    BOOST_TEST(find_error(errors, "upstream.max_body_bytes")->reason.find("1KiB and 64MiB") !=
                   std::string::npos,
               dump(errors));
}

BOOST_AUTO_TEST_CASE(syntax_error_has_line_and_column) {
    settings s;
    const auto errors = apply_toml("[server]\nthreads = 4\nlisten = \"127.0.0.1:1\n", "x.toml", s);
    BOOST_REQUIRE(errors.size() == 1U);
    BOOST_TEST(errors[0].key == "--config");
    BOOST_TEST(errors[0].reason.starts_with("x.toml:3:"), errors[0].reason);
}

BOOST_AUTO_TEST_CASE(missing_file) {
    const auto r = run({"--config", "/nonexistent/imagegate.toml"});
    BOOST_REQUIRE(r.errors.size() == 1U);
    BOOST_TEST(r.errors[0].key == "--config");
    BOOST_TEST(r.errors[0].reason.find("/nonexistent/imagegate.toml") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(checks)

BOOST_DATA_TEST_CASE(check_rules, bdata::make(check_rows), row) {
    settings s;
    row.change(s);
    const auto errors = check(s);
    if (row.error_key.empty()) {
        BOOST_TEST(errors.empty(), dump(errors));
    } else {
        BOOST_TEST(keys_of(errors) == std::vector<std::string>{std::string(row.error_key)},
                   boost::test_tools::per_element());
    }
}

// [warm] state_file: written as a temporary file in its directory and renamed over it.
BOOST_AUTO_TEST_CASE(warm_state_file_needs_an_existing_directory_and_a_file_name) {
    const temp_dir dir;
    const auto state_errors = [](const std::string& path) {
        settings s;
        s.warm.state_file = path;
        return keys_of(check(s));
    };
    const std::vector<std::string> warm_key{"warm.state_file"};
    BOOST_TEST(state_errors("").empty());  // the default: in memory only
    BOOST_TEST(state_errors((dir.path() / "warm.state").string()).empty());  // not there yet
    BOOST_TEST(state_errors(dir.write("warm.state", "x")).empty());          // there already
    BOOST_TEST(state_errors((dir.path() / "missing" / "warm.state").string()) == warm_key,
               boost::test_tools::per_element());
    BOOST_TEST(state_errors(dir.path().string() + "/") == warm_key,
               boost::test_tools::per_element());
    BOOST_TEST(state_errors(dir.path().string()) == warm_key,  // a directory, not a file
               boost::test_tools::per_element());
    BOOST_TEST(state_errors(dir.write("a-file", "x") + "/warm.state") == warm_key,
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(readable_ca_file_passes) {
    const temp_dir dir;
    settings s;
    s.upstream.ca_file = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
    BOOST_TEST(check(s).empty(), dump(check(s)));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(describe_output)

BOOST_AUTO_TEST_CASE(one_line_per_key) {
    const auto text = describe(settings{});
    for (const auto& key : keys()) {
        BOOST_TEST(text.find(key.path() + " = ") != std::string::npos, key.path());
    }
    BOOST_TEST(text.find("upstream.token = <unset>\n") != std::string::npos);
    BOOST_TEST(text.find("cache.ttl = \"5m\"\n") != std::string::npos, text);
    BOOST_TEST(text.find("cache.max_bytes = \"256MiB\"\n") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(reads_back_as_toml) {
    settings s;
    s.server.listen = "[::1]:0";
    s.upstream.ca_file = "dir with \"quotes\"\\ca.pem";
    s.cache.max_bytes = 1000;
    s.cache.max_entry_bytes = 1000;
    s.cache.ttl = 1500ms;
    s.log.access_log = false;
    auto text = describe(s);
    text.erase(text.find("upstream.token = "));  // not TOML and not a key
    settings back;
    const auto errors = apply_toml(text, "describe", back);
    BOOST_TEST(errors.empty(), dump(errors));
    BOOST_TEST((back == s));
}

BOOST_AUTO_TEST_SUITE_END()
