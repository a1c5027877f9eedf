// imagegate: a caching gateway for the Cloudflare Images "image details" API.
// main() only loads the configuration, builds the logger and runs the composition root.
#include "config/load.hpp"
#include "gateway/fleet/redis_clients.hpp"
#include "gateway/runtime/app.hpp"
#include "gateway/http/server.hpp"
#include "gateway/runtime/logging.hpp"
#include "gateway/core/version.hpp"
#include "gateway/warm/cli.hpp"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    namespace config = imagegate::config;
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args.front() == "warm") {
        // `imagegate warm …`: a client of a running gateway's admin API (gateway/warm/cli.cpp).
        return imagegate::warm::run_warm_command({args.begin() + 1, args.end()});
    }
    config::load_result loaded = config::load(args, config::process_environment());
    if (loaded.show_help) {
        std::fputs(config::help_text().c_str(), stdout);
        return 0;
    }
    if (loaded.show_version) {
        std::printf("imagegate %.*s\n", static_cast<int>(imagegate::version.size()),
                    imagegate::version.data());
        return 0;
    }
    if (!loaded.errors.empty()) {
        for (const auto& e : loaded.errors) {
            std::fprintf(stderr, "imagegate: %s: %s\n", e.key.c_str(), e.reason.c_str());
        }
        std::fprintf(stderr, "imagegate: %zu configuration error(s); see imagegate --help\n",
                     loaded.errors.size());
        return 2;
    }
    // The listener's certificate and key are loaded here too, so that --check-config and a
    // start with a bad PEM or a key of another certificate both fail like any config error.
    if (const auto& server = loaded.value.server; !server.tls_cert.empty()) {
        const auto tls =
            imagegate::gateway::make_listener_tls_context(server.tls_cert, server.tls_key);
        if (!tls) {
            std::fprintf(stderr, "imagegate: %s: %s\n", tls.error().key.c_str(),
                         tls.error().reason.c_str());
            std::fprintf(stderr, "imagegate: 1 configuration error(s); see imagegate --help\n");
            return 2;
        }
    }
    // The fleet tier's URL grammar and password file (config/ cannot parse them itself).
    if (const auto& redis = loaded.value.redis; !redis.url.empty()) {
        if (const auto opts = imagegate::fleet::connection_options_from(loaded.value); !opts) {
            std::fprintf(stderr, "imagegate: redis: %s\n", opts.error().reason.c_str());
            std::fprintf(stderr, "imagegate: 1 configuration error(s); see imagegate --help\n");
            return 2;
        }
    }
    if (loaded.print_config) {
        std::fputs(config::to_toml(loaded.value).c_str(), stdout);
        return 0;
    }
    if (loaded.check_only) {
        std::puts("imagegate: configuration OK");
        return 0;
    }
    std::shared_ptr<spdlog::logger> log;
    try {
        log = imagegate::gateway::make_logger(loaded.value.log);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "imagegate: log: %s\n", e.what());
        return 2;
    }
    spdlog::set_default_logger(log);
    log->info("imagegate {} starting", imagegate::version);
    {
        const std::string settings = config::describe(loaded.value);
        std::size_t start = 0;
        while (start < settings.size()) {
            const auto end = settings.find('\n', start);
            log->info("setting {}", std::string_view(settings).substr(start, end - start));
            start = end == std::string::npos ? settings.size() : end + 1;
        }
    }
    try {
        imagegate::gateway::app gateway(std::move(loaded.value), log);
        // SIGHUP and POST /config/reload read the same sources again: the same command line,
        // the environment as it is now, and the files they name.
        gateway.set_config_source(
            [args] { return config::load(args, config::process_environment()); });
        return gateway.run_until_signal();
    } catch (const std::exception& e) {
        log->critical("cannot start: {}", e.what());
        return 1;
    }
}
