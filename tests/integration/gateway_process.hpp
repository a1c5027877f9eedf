// The real imagegate executable as a test runs it: started with a config file and an
// environment, its two ports read from its "listening" log line, stopped by its PID.
#pragma once

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/process.hpp"

#include <boost/beast/http/verb.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::testing {

/// One imagegate process and its two ports.
struct gateway_process {
    std::unique_ptr<process> proc;
    endpoint data;
    endpoint admin;

    /// The value of `name` in /metrics, or -1 when absent.
    double metric(std::string_view name) const {
        const auto r = request(admin, boost::beast::http::verb::get, "/metrics");
        const std::string needle = "\n" + std::string(name) + " ";
        const auto at = r.body.find(needle);
        return at == std::string::npos ? -1 : std::stod(r.body.substr(at + needle.size()));
    }
};

/// Starts `binary --config config` with `env` (stdout and stderr to `out`) and waits up to
/// 10 s for its "imagegate listening on" line; fails the test when it does not come.
inline gateway_process start_gateway_process(const std::string& binary, const std::string& config,
                                             std::vector<std::string> env,
                                             const std::filesystem::path& out) {
    gateway_process n;
    n.proc = std::make_unique<process>(std::vector<std::string>{binary, "--config", config},
                                       std::move(env), out);
    unsigned a = 0;
    unsigned b = 0;
    BOOST_REQUIRE_MESSAGE(
        eventually(
            [&] {
                const auto log = n.proc->output();
                const auto at = log.find("imagegate listening on");
                if (at == std::string::npos) {
                    return false;
                }
                const auto line = log.substr(at, log.find('\n', at) - at);
                return std::sscanf(
                           line.c_str(),
                           "imagegate listening on %*[^(](port %u), admin on %*[^(](port %u)", &a,
                           &b) == 2;
            },
            std::chrono::seconds(10)),
        "imagegate did not start: " << n.proc->output());
    n.data.port = static_cast<std::uint16_t>(a);
    n.data.tls = false;
    n.admin = n.data;
    n.admin.port = static_cast<std::uint16_t>(b);
    return n;
}

}  // namespace imagegate::testing
