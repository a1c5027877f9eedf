// The real executables, as a user runs them: imagegate's flags, config errors and exit
// codes, imagegate in front of imagegate-emulator over verified TLS, surviving SIGHUP and
// stopped by SIGTERM, and the data listener's own TLS (certificate/key errors, https
// start-up).
#define BOOST_TEST_MODULE binary_test
#include "tests/integration/gateway_fixture.hpp"

#include <boost/beast/http/verb.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

extern char** environ;

namespace ts = imagegate::testing;
using ts::contains;
using namespace std::chrono_literals;

namespace {

/// A child process with stdout+stderr captured to a file; killed if still running at the end.
class process {
public:
    process(std::vector<std::string> argv, std::vector<std::string> env,
            const std::filesystem::path& out)
        : out_(out) {
        std::vector<char*> av;
        for (auto& a : argv) {
            av.push_back(a.data());
        }
        av.push_back(nullptr);
        std::vector<std::string> envs = std::move(env);
        std::vector<char*> ev;
        for (auto& e : envs) {
            ev.push_back(e.data());
        }
        ev.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        const int rc = posix_spawn(&pid_, av[0], &fa, nullptr, av.data(), ev.data());
        posix_spawn_file_actions_destroy(&fa);
        BOOST_REQUIRE_MESSAGE(rc == 0, "cannot start " << argv[0]);
    }
    ~process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait_exit(5s);
        }
    }
    /// Exit status, or -1 if it did not exit within `limit`.
    int wait_exit(std::chrono::milliseconds limit) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(5ms);
        }
        return -1;
    }
    void signal(int sig) const { ::kill(pid_, sig); }
    std::string output() const {
        std::ifstream in(out_);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

private:
    pid_t pid_ = -1;
    std::filesystem::path out_;
};

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

}  // namespace

BOOST_AUTO_TEST_CASE(help_lists_every_flag) {
    const auto r = run({IMAGEGATE_BIN, "--help"});
    BOOST_TEST(r.status == 0);
    for (const char* flag :
         {"--config", "--listen", "--admin-listen", "--upstream ", "--upstream-ca", "--threads",
          "--cache-max-bytes", "--ttl", "--log-level", "--check-config"}) {
        BOOST_TEST(contains(r.output, flag), flag);
    }
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
    auto emu_env = base_env();
    emu_env.push_back("EMULATOR_TOKEN=" + token);
    process emu({IMAGEGATE_EMULATOR_BIN, "--listen", "127.0.0.1:0", "--port-file",
                 (d.path() / "emu.port").string(), "--write-ca", (d.path() / "ca.pem").string(),
                 "--any-image"},
                emu_env, d.path() / "emu.out");
    const std::string emu_port = read_port(d.path() / "emu.port");
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

    // SIGHUP (a reload, some day) is logged; the process goes on serving.
    gw.signal(SIGHUP);
    BOOST_TEST(ts::eventually([&] { return contains(gw.output(), "reload not supported yet"); }));
    BOOST_TEST(ts::request(admin, boost::beast::http::verb::get, "/readyz").status == 200u);
    BOOST_TEST(contains(
        ts::request(data, boost::beast::http::verb::get, path).header("Cache-Status"), "hit"));

    gw.signal(SIGTERM);
    BOOST_TEST(gw.wait_exit(10s) == 0);
    const auto log = gw.output();
    BOOST_TEST(contains(log, "shutdown complete"));
    BOOST_TEST(!contains(log, token));  // the token never reaches the log
    BOOST_TEST(contains(log, "upstream.token = <set>"));
    emu.signal(SIGTERM);
    BOOST_TEST(emu.wait_exit(10s) == 0);
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
