// The real executables, as a user runs them: imagegate's flags, config errors and exit
// codes, imagegate in front of imagegate-emulator over verified TLS, reloading on SIGHUP and
// stopped by SIGTERM, and the data listener's own TLS (certificate/key errors, https
// start-up).
#define BOOST_TEST_MODULE binary_test
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/process.hpp"

#include "gateway/core/version.hpp"

#include <boost/beast/http/verb.hpp>
#include <simdjson.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>

extern char** environ;

namespace ts = imagegate::testing;
using ts::contains;
using namespace std::chrono_literals;

namespace {

using ts::process;

std::vector<std::string> base_env() { return {"PATH=/usr/bin:/bin"}; }

struct run_result {
    int status;
    std::string output;
};

run_result run(std::vector<std::string> argv, std::vector<std::string> env = base_env()) {
    ts::temp_dir d;
    process p(std::move(argv), std::move(env), d.path() / "out");
    const int st = p.wait_exit(20s);
    return {st, p.output()};
}

std::string read_port(const std::filesystem::path& f) {
    std::string port;
    ts::eventually(
        [&] {
            std::ifstream in(f);
            return static_cast<bool>(in >> port);
        },
        10s);
    return port;
}

/// The emulator (every image exists, `token` accepted) writing its CA and port into `dir`;
/// stopped with this object.
struct emulator {
    emulator(const std::filesystem::path& dir, const std::string& token)
        : proc(
              {IMAGEGATE_EMULATOR_BIN, "--listen", "127.0.0.1:0", "--port-file",
               (dir / "emu.port").string(), "--write-ca", (dir / "ca.pem").string(), "--any-image"},
              with_token(token), dir / "emu.out"),
          port(read_port(dir / "emu.port")) {}

    static std::vector<std::string> with_token(const std::string& token) {
        auto env = base_env();
        env.push_back("EMULATOR_TOKEN=" + token);
        return env;
    }

    process proc;
    std::string port;  ///< empty when it did not start
};

}  // namespace

BOOST_AUTO_TEST_CASE(help_lists_every_flag) {
    const auto r = run({IMAGEGATE_BIN, "--help"});
    BOOST_TEST(r.status == 0);
    for (const char* flag : {"--config", "--listen", "--admin-listen", "--upstream ",
                             "--upstream-ca", "--threads", "--cache-max-bytes", "--ttl",
                             "--log-level", "--check-config", "--print-config", "--version"}) {
        BOOST_TEST(contains(r.output, flag), flag);
    }
}

BOOST_AUTO_TEST_CASE(version_prints_the_version) {
    const auto r = run({IMAGEGATE_BIN, "--version"});
    BOOST_TEST(r.status == 0);
    BOOST_TEST(r.output == "imagegate " + std::string(imagegate::version) + "\n");
}

BOOST_AUTO_TEST_CASE(print_config_shows_effective_toml_without_secrets) {
    ts::temp_dir d;
    const std::string upstream_secret = "print-config-upstream-secret-77";
    const std::string admin_secret = "print-config-admin-secret-0123";
    const auto admin_file = (d.path() / "admin.token").string();
    ts::write_file(admin_file, admin_secret + "\n");
    std::filesystem::permissions(admin_file, std::filesystem::perms::owner_read);
    const auto file = (d.path() / "gw.toml").string();
    ts::write_file(
        file, "[log]\naccess_log_hit_sample = 7\n[admin]\ntoken_file = \"" + admin_file + "\"\n");
    auto env = base_env();
    env.push_back("CLOUDFLARE_API_TOKEN=" + upstream_secret);
    env.push_back("IMAGEGATE_CACHE_TTL=90s");
    const auto r = run({IMAGEGATE_BIN, "--config", file, "--threads", "3", "--print-config"}, env);
    BOOST_TEST(r.status == 0, r.output);
    for (const char* line : {"[server]\n", "threads = 3\n", "[cache]\n", "ttl = \"1m30s\"\n",
                             "access_log_hit_sample = 7\n",
                             "# upstream token (CLOUDFLARE_API_TOKEN or "
                             "upstream.token_file): <set>\n",
                             "# admin token (admin.token_file): <set>\n"}) {
        BOOST_TEST(contains(r.output, line), line);
    }
    BOOST_TEST(!contains(r.output, upstream_secret));
    BOOST_TEST(!contains(r.output, admin_secret));
    // It is the configuration: read back alone, it prints the same (tokens aside).
    const auto printed = (d.path() / "printed.toml").string();
    ts::write_file(printed, r.output);
    const auto again = run({IMAGEGATE_BIN, "--config", printed, "--print-config"}, env);
    BOOST_TEST(again.status == 0, again.output);
    BOOST_TEST(again.output == r.output);
    // Errors are reported as for any start.
    env.push_back("IMAGEGATE_SERVER_THREADS=many");
    BOOST_TEST(run({IMAGEGATE_BIN, "--print-config"}, env).status == 2);
}

BOOST_AUTO_TEST_CASE(example_config_checks_clean) {
    const auto r = run({IMAGEGATE_BIN, "--config",
                        IMAGEGATE_SOURCE_DIR "/deploy/imagegate.example.toml", "--check-config"});
    BOOST_TEST(r.status == 0);
}

BOOST_AUTO_TEST_CASE(bad_configuration_reports_every_error_and_exits_2) {
    ts::temp_dir d;
    const auto file = d.path() / "bad.toml";
    ts::write_file(file.string(), "[cache]\nttl = 5\nmax_bytes = \"lots\"\n[nope]\nx = 1\n");
    auto env = base_env();
    env.push_back("IMAGEGATE_SERVER_THREADS=many");
    const auto r = run({IMAGEGATE_BIN, "--config", file.string(), "--listen", "nowhere"}, env);
    BOOST_TEST(r.status == 2);
    for (const char* key :
         {"cache.ttl", "cache.max_bytes", "nope", "IMAGEGATE_SERVER_THREADS", "--listen"}) {
        BOOST_TEST(contains(r.output, key), key << " in: " << r.output);
    }
    const auto check = run({IMAGEGATE_BIN, "--config", file.string(), "--check-config"});
    BOOST_TEST(check.status == 2);
}

BOOST_AUTO_TEST_CASE(gateway_in_front_of_emulator_then_sigterm) {
    ts::temp_dir d;
    const std::string token = "binary-test-token-5f2c";
    emulator emu(d.path(), token);
    const std::string& emu_port = emu.port;
    BOOST_REQUIRE(!emu_port.empty());

    // The gateway picks its own ports; find them in its start-up log line.
    auto gw_env = base_env();
    gw_env.push_back("CLOUDFLARE_API_TOKEN=" + token);
    process gw({IMAGEGATE_BIN, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                "--upstream", "https://localhost:" + emu_port + "/client/v4", "--upstream-ca",
                (d.path() / "ca.pem").string(), "--threads", "2"},
               gw_env, d.path() / "gw.out");
    std::uint16_t data_port = 0;
    std::uint16_t admin_port = 0;
    BOOST_REQUIRE(ts::eventually(
        [&] {
            const auto out = gw.output();
            const auto at = out.find("imagegate listening on");
            if (at == std::string::npos) {
                return false;
            }
            unsigned a = 0;
            unsigned b = 0;
            const auto line = out.substr(at, out.find('\n', at) - at);
            if (std::sscanf(line.c_str(),
                            "imagegate listening on %*[^(](port %u), admin on %*[^(](port %u)", &a,
                            &b) != 2) {
                return false;
            }
            data_port = static_cast<std::uint16_t>(a);
            admin_port = static_cast<std::uint16_t>(b);
            return true;
        },
        10s));

    ts::endpoint data;
    data.tls = false;
    data.port = data_port;
    const auto path = "/client/v4/accounts/" + ts::test_account + "/images/v1/bin-1";
    const auto first = ts::request(data, boost::beast::http::verb::get, path);
    BOOST_TEST(first.status == 200u);
    BOOST_TEST(contains(first.header("Cache-Status"), "fwd=miss"));
    const auto second = ts::request(data, boost::beast::http::verb::get, path);
    BOOST_TEST(contains(second.header("Cache-Status"), "hit"));
    ts::endpoint admin = data;
    admin.port = admin_port;
    BOOST_TEST(ts::request(admin, boost::beast::http::verb::get, "/readyz").status == 200u);

    // SIGHUP reloads the same command line and environment: nothing changes, the process
    // goes on serving from the same cache.
    gw.signal(SIGHUP);
    BOOST_TEST(ts::eventually([&] {
        return contains(gw.output(),
                        "configuration reloaded: applied: none; restart required (old value "
                        "kept): none");
    }));
    BOOST_TEST(ts::request(admin, boost::beast::http::verb::get, "/readyz").status == 200u);
    BOOST_TEST(contains(
        ts::request(data, boost::beast::http::verb::get, path).header("Cache-Status"), "hit"));

    gw.signal(SIGTERM);
    BOOST_TEST(gw.wait_exit(10s) == 0);
    const auto log = gw.output();
    BOOST_TEST(contains(log, "shutdown complete"));
    BOOST_TEST(!contains(log, token));  // the token never reaches the log
    BOOST_TEST(contains(log, "upstream.token = <set>"));
    emu.proc.signal(SIGTERM);
    BOOST_TEST(emu.proc.wait_exit(10s) == 0);
}

namespace {

/// A config file naming a listener certificate and key (mode 600) in `d`.
std::string tls_config(const ts::temp_dir& d, const std::string& cert_pem,
                       const std::string& key_pem) {
    const auto cert = (d.path() / "listener.pem").string();
    const auto key = (d.path() / "listener.key").string();
    ts::write_file(cert, cert_pem);
    ts::write_file(key, key_pem);
    std::filesystem::permissions(
        key, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    const auto file = (d.path() / "tls.toml").string();
    ts::write_file(file,
                   "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n"
                   "tls_cert = \"" +
                       cert + "\"\ntls_key = \"" + key + "\"\n");
    return file;
}

}  // namespace

BOOST_AUTO_TEST_CASE(listener_key_of_another_certificate_exits_2) {
    ts::temp_dir d;
    const auto pki = ts::make_test_pki();
    const auto other = ts::make_test_pki();
    const auto file = tls_config(d, pki.server_cert_pem, other.server_key_pem);
    for (const bool check_only : {true, false}) {
        BOOST_TEST_CONTEXT("check_only " << check_only) {
            std::vector<std::string> argv{IMAGEGATE_BIN, "--config", file};
            if (check_only) {
                argv.emplace_back("--check-config");
            }
            const auto r = run(argv);
            BOOST_TEST(r.status == 2);
            BOOST_TEST(contains(r.output, "server.tls_key"), r.output);
            BOOST_TEST(contains(r.output, "does not match"), r.output);
            BOOST_TEST(contains(r.output, (d.path() / "listener.key").string()), r.output);
            BOOST_TEST(!contains(r.output, "PRIVATE KEY"));
            BOOST_TEST(!contains(r.output, other.server_key_pem.substr(40, 20)));
        }
    }
    // Not PEM at all: refused the same way, naming the certificate file.
    const auto garbage = tls_config(d, "not a certificate\n", pki.server_key_pem);
    const auto g = run({IMAGEGATE_BIN, "--config", garbage, "--check-config"});
    BOOST_TEST(g.status == 2);
    BOOST_TEST(contains(g.output, "server.tls_cert"), g.output);
    // The matching pair checks clean.
    const auto good = tls_config(d, pki.server_cert_pem, pki.server_key_pem);
    BOOST_TEST(run({IMAGEGATE_BIN, "--config", good, "--check-config"}).status == 0);
}

BOOST_AUTO_TEST_CASE(tls_listener_starts_on_https_and_stops_on_sigterm) {
    ts::temp_dir d;
    const auto pki = ts::make_test_pki();
    const auto file = tls_config(d, pki.server_cert_pem, pki.server_key_pem);
    process gw({IMAGEGATE_BIN, "--config", file, "--threads", "1"}, base_env(),
               d.path() / "gw.out");
    unsigned port = 0;
    BOOST_REQUIRE(ts::eventually(
        [&] {
            const auto out = gw.output();
            const auto at = out.find("listening on https://127.0.0.1:");
            return at != std::string::npos &&
                   std::sscanf(out.c_str() + at, "listening on https://127.0.0.1:%u", &port) == 1;
        },
        10s));
    ts::endpoint data;
    data.port = static_cast<std::uint16_t>(port);
    data.tls = true;
    data.ca_pem = pki.ca_cert_pem;
    data.server_name = "localhost";
    // No upstream is needed for a route the gateway answers itself.
    const auto r = ts::request(data, boost::beast::http::verb::get, "/nowhere");
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(contains(gw.output(), "admin on http://127.0.0.1:"));
    gw.signal(SIGTERM);
    BOOST_TEST(gw.wait_exit(10s) == 0);
    BOOST_TEST(!contains(gw.output(), "PRIVATE KEY"));
}

namespace {

std::string read_text(const std::filesystem::path& f) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// The data and admin ports from the start-up line "imagegate listening on … (port N), admin
/// on … (port M)" (in either log format), once it is there.
std::pair<std::uint16_t, std::uint16_t> listening_ports(const process& gw) {
    std::pair<std::uint16_t, std::uint16_t> ports{0, 0};
    ts::eventually(
        [&] {
            const auto out = gw.output();
            const auto at = out.find("imagegate listening on");
            unsigned a = 0;
            unsigned b = 0;
            if (at == std::string::npos ||
                std::sscanf(out.c_str() + at,
                            "imagegate listening on %*[^(](port %u), admin on %*[^(](port %u)", &a,
                            &b) != 2) {
                return false;
            }
            ports = {static_cast<std::uint16_t>(a), static_cast<std::uint16_t>(b)};
            return true;
        },
        10s);
    return ports;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

// What a forged line would start with; no line we write has this timestamp.
const std::string forged = "1999-12-31T23:59:59.999+00:00 critical [1] FORGED";

/// Runs imagegate (log format `format`, access log on, debug level) in front of
/// imagegate-emulator, sends it hostile request targets, and has the upstream answer a
/// record whose metadata member name is a forged log line; returns the gateway's whole
/// output after SIGTERM.
std::string hostile_run(const std::string& format) {
    ts::temp_dir d;
    const std::string token = "binary-test-token-5f2c";
    emulator emu(d.path(), token);
    const std::string& emu_port = emu.port;
    BOOST_REQUIRE(!emu_port.empty());

    // The upstream stores a record whose metadata holds a member named like a log line, its
    // value nested past the validator's depth limit, so the validator rejects the record at
    // a JSON pointer that names the member.
    std::string nested = "1";
    for (int i = 0; i < 70; ++i) {
        nested = R"({"a":)" + nested + "}";
    }
    ts::endpoint upstream;
    upstream.port = static_cast<std::uint16_t>(std::stoi(emu_port));
    upstream.ca_pem = read_text(d.path() / "ca.pem");
    upstream.server_name = "localhost";
    const std::string json_name =
        R"(\n)" + forged + R"(\"},\"level\":\"critical\",\"msg\":\"FORGED\u2028\u202e)";
    const auto patched =
        ts::request(upstream, boost::beast::http::verb::patch,
                    "/client/v4/accounts/" + ts::test_account + "/images/v1/forged-1",
                    {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}},
                    R"({"metadata":{")" + json_name + R"(":)" + nested + "}}");
    BOOST_REQUIRE_MESSAGE(patched.status == 200u, patched.body);

    const auto config = (d.path() / "gw.toml").string();
    ts::write_file(config,
                   "[log]\nformat = \"" + format + "\"\naccess_log = true\nlevel = \"debug\"\n");
    auto gw_env = base_env();
    gw_env.push_back("CLOUDFLARE_API_TOKEN=" + token);
    process gw({IMAGEGATE_BIN, "--config", config, "--listen", "127.0.0.1:0", "--admin-listen",
                "127.0.0.1:0", "--upstream", "https://localhost:" + emu_port + "/client/v4",
                "--upstream-ca", (d.path() / "ca.pem").string(), "--threads", "2"},
               gw_env, d.path() / "gw.out");
    const auto [data_port, admin_port] = listening_ports(gw);
    BOOST_REQUIRE(data_port != 0);

    ts::endpoint data;
    data.tls = false;
    data.port = data_port;
    data.timeout = 5s;
    const std::string image = "/client/v4/accounts/" + ts::test_account + "/images/v1/";
    const std::string targets[] = {
        // Quotes: a JSON member of its own, a level, a message.
        R"(/x"},"level":"critical","msg":"FORGED)",
        // Backslashes, bytes >= 0x80 (Beast accepts them in targets), a percent-encoded LF.
        "/x\\\"y\xff\xfe\xc3\x28\xe2\x80\xa8",
        image + "a%0a1999-12-31T23:59:59.999+00:00%20critical%20[1]%20FORGED",
        image + "caf\xc3\xa9\xff",
        // Absolute-form the listener refuses, and a fragment.
        "http://h?/x\"},\"level\":\"critical",
        image + "ok#\"}",
    };
    for (const auto& t : targets) {
        const auto out = ts::raw_exchange(
            data, "GET " + t + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        BOOST_TEST(out.rfind("HTTP/1.1 4", 0) == 0u, t << ": " << out.substr(0, 40));
    }
    // The record with the forged member name: rejected (502), logged with its pointer.
    const auto rejected = ts::request(data, boost::beast::http::verb::get, image + "forged-1");
    BOOST_TEST(rejected.status == 502u);
    BOOST_TEST(ts::request(data, boost::beast::http::verb::get, image + "fine-1").status == 200u);

    gw.signal(SIGTERM);
    BOOST_TEST(gw.wait_exit(10s) == 0);
    emu.proc.signal(SIGTERM);
    BOOST_TEST(emu.proc.wait_exit(10s) == 0);
    return gw.output();
}

}  // namespace

// log.format = "json": every line of a log that saw hostile targets and a hostile upstream
// member name is one valid JSON object with our four members first; access lines carry
// their fields as members; nothing forged a level, a line or a member.
BOOST_AUTO_TEST_CASE(json_log_lines_parse_whatever_clients_and_the_upstream_send) {
    const std::string log = hostile_run("json");
    const auto lines = lines_of(log);
    BOOST_TEST(lines.size() > 40u);
    simdjson::dom::parser parser;
    int access = 0;
    int rejected = 0;
    for (const auto& line : lines) {
        BOOST_TEST_CONTEXT(line) {
            simdjson::dom::element doc;
            BOOST_TEST_REQUIRE(!parser.parse(line).get(doc));  // the whole line is validated
            simdjson::dom::object obj;
            BOOST_TEST_REQUIRE(!doc.get_object().get(obj));
            std::string_view time;
            std::string_view level;
            std::int64_t thread = 0;
            std::string_view msg;
            BOOST_TEST_REQUIRE(!obj["time"].get_string().get(time));
            BOOST_TEST_REQUIRE(!obj["level"].get_string().get(level));
            BOOST_TEST(!obj["thread"].get_int64().get(thread));
            BOOST_TEST_REQUIRE(!obj["msg"].get_string().get(msg));
            BOOST_TEST(!time.starts_with("1999"));
            BOOST_TEST(
                (level == "debug" || level == "info" || level == "warning" || level == "error"));
            // Exactly the four members, plus the access fields on access lines.
            BOOST_TEST(obj.size() == (msg == "access" ? 12u : 4u));
            BOOST_TEST(!msg.starts_with("FORGED"));
            if (msg == "access") {
                ++access;
                std::int64_t status = 0;
                double ms = 0;
                std::string_view target;
                BOOST_TEST(!obj["status"].get_int64().get(status));
                BOOST_TEST(!obj["dur_ms"].get_double().get(ms));
                BOOST_TEST(!obj["bytes"].get_int64().get(status));
                BOOST_TEST(!obj["target"].get_string().get(target));
            }
            if (msg.find("rejected at") != std::string_view::npos) {
                ++rejected;
                // The member name is in the message, escaped: its LF is the two characters
                // backslash and n, so it parsed back as text, not as a second line.
                BOOST_TEST(ts::contains(msg, "/result/meta/\\n" + forged), msg);
            }
        }
    }
    BOOST_TEST(access >= 8);
    BOOST_TEST(rejected == 1);
    // The hostile target is one string member of its access line.
    BOOST_TEST(ts::contains(log, R"("target":"/x\"},\"level\":\"critical\",\"msg\":\"FORGED")"));
}

// The text format: every line starts with our timestamp, level and thread, so no value can
// start a line of its own; quotes and backslashes in values are escaped.
BOOST_AUTO_TEST_CASE(text_log_lines_cannot_be_forged) {
    const std::string log = hostile_run("text");
    const auto lines = lines_of(log);
    BOOST_TEST(lines.size() > 40u);
    const std::regex ours(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2} )"
                          R"((debug|info|warning|error) \[\d+\] .*)");
    for (const auto& line : lines) {
        BOOST_TEST_CONTEXT(line) {
            BOOST_TEST(std::regex_match(line, ours));
            BOOST_TEST(!line.starts_with("1999"));
            for (const char ch : line) {
                const auto u = static_cast<unsigned char>(ch);
                BOOST_TEST_REQUIRE((u >= 0x20 && u != 0x7f));
            }
        }
    }
    BOOST_TEST(ts::contains(log, R"(rejected at "/result/meta/\n)" + forged + R"(\"},\"level)"));
    BOOST_TEST(
        ts::contains(log, R"(GET "/x\"},\"level\":\"critical\",\"msg\":\"FORGED" status=404)"));
}

namespace {

// The test process opens hundreds of sockets: its soft limit goes up to the hard one.
void raise_own_open_files_limit() {
    rlimit lim{};
    BOOST_REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    lim.rlim_cur = lim.rlim_max;
    BOOST_REQUIRE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);
}

// A connected, idle TCP socket to 127.0.0.1:port.
int idle_connection(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

}  // namespace

// Issue 11, item 7: with an open-files limit of 256 (soft and hard) and the default
// server.max_connections (10000), 400 idle connections once made accept fail with EMFILE
// and left data and admin requests hanging. Now start-up says the limit is too low for the
// configuration and caps data connections so that the admin port keeps answering and new
// data connections get 503 at once; once the idle ones close, data is served again.
BOOST_AUTO_TEST_CASE(a_low_open_files_limit_fails_cleanly) {
    raise_own_open_files_limit();
    ts::temp_dir d;
    const auto config = (d.path() / "gw.toml").string();
    ts::write_file(config, "[server]\nheader_timeout = \"60s\"\n");
    process gw(
        {"/bin/sh", "-c", "ulimit -n 256 && exec \"$0\" \"$@\"", IMAGEGATE_BIN, "--config", config,
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--threads", "1"},
        base_env(), d.path() / "gw.out");
    const auto [data_port, admin_port] = listening_ports(gw);
    BOOST_REQUIRE(data_port != 0);
    BOOST_TEST(ts::contains(gw.output(), "open-files limit 256 is below"), gw.output());
    BOOST_TEST(ts::contains(gw.output(), "serving at most 84 data connections"), gw.output());

    std::vector<int> idle;
    for (int i = 0; i < 400; ++i) {
        idle.push_back(idle_connection(data_port));
    }
    ts::endpoint admin;
    admin.tls = false;
    admin.port = admin_port;
    admin.timeout = 3s;
    const auto health = ts::request(admin, boost::beast::http::verb::get, "/healthz");
    BOOST_TEST(health.status == 200u);
    ts::endpoint data = admin;
    data.port = data_port;
    const auto start = std::chrono::steady_clock::now();
    const auto refused =
        ts::raw_exchange(data, "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    BOOST_TEST(refused.rfind("HTTP/1.1 503 ", 0) == 0u, refused.substr(0, 40));
    BOOST_TEST((std::chrono::steady_clock::now() - start < 2s));
    const auto metrics = ts::request(admin, boost::beast::http::verb::get, "/metrics");
    BOOST_TEST(ts::contains(metrics.body,
                            R"(imagegate_accept_errors_total{listener="data",reason="emfile"} )"));

    for (const int fd : idle) {
        ::close(fd);
    }
    BOOST_TEST(ts::eventually([&] {
        return ts::raw_exchange(data,
                                "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                   .rfind("HTTP/1.1 404 ", 0) == 0;
    }));
    gw.signal(SIGTERM);
    BOOST_TEST(gw.wait_exit(10s) == 0);
}

// A limit that leaves no room for data connections next to the admin listener and the
// upstream pools: start-up refuses with a message that says what to change.
BOOST_AUTO_TEST_CASE(an_open_files_limit_too_low_to_serve_refuses_to_start) {
    const auto r =
        run({"/bin/sh", "-c", "ulimit -n 150 && exec \"$0\" \"$@\"", IMAGEGATE_BIN, "--listen",
             "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--threads", "1"});
    BOOST_TEST(r.status == 1);
    BOOST_TEST(ts::contains(r.output, "open-files limit (150"), r.output);
    BOOST_TEST(ts::contains(r.output, "LimitNOFILE"), r.output);
}
