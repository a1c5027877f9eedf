// The composition root: builds every component from settings, runs the I/O workers, and
// shuts down gracefully. main() and the integration tests both drive it.
#pragma once

#include "gateway/core/time_source.hpp"
#include "config/settings.hpp"
#include "gateway/admin/handler.hpp"
#include "gateway/core/net.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>

namespace spdlog {
class logger;
}

namespace imagegate::config {
struct load_result;
}

namespace imagegate::metrics {
class registry;
}

namespace imagegate::gateway {

class write_effects;

/// Owns the process's services. Construct (binds the listeners: throws on failure), then
/// run_until_signal(), or start() and later shutdown(). Not copyable.
/// Thread-safety: shutdown() from any thread, I/O workers included; start(),
/// run_until_signal(), wait() and the destructor from one thread that is not a worker.
class app {
public:
    app(config::settings s, std::shared_ptr<spdlog::logger> log);
    ~app();
    app(const app&) = delete;
    app& operator=(const app&) = delete;

    /// Starts the listeners and the I/O threads; ready afterwards. Called once.
    void start();
    /// Where reload() reads the configuration again (main: config::load with the same
    /// command line). Set before start(); without it a reload fails and changes nothing.
    void set_config_source(std::function<config::load_result()> source);
    /// Reloads the configuration: everything is read and checked again; on success what can
    /// change live is applied (the rest is reported as needing a restart), on failure
    /// nothing changes. The cache, connections and budgets are kept. Logs the outcome.
    /// Any thread (SIGHUP and POST /config/reload call it on a worker); one at a time.
    reload_outcome reload();
    /// Handles signals (SIGINT/SIGTERM: shut down; SIGHUP: reload()), starts if start() was
    /// not called, and returns once a
    /// shutdown (by signal or by shutdown() from any thread) is complete. Returns the
    /// process exit code.
    int run_until_signal();
    /// Graceful: stop accepting, let in-flight requests finish within
    /// server.drain_timeout, close the rest, join the threads. Idempotent. On an I/O
    /// worker it only starts the shutdown and returns (a worker cannot wait for itself);
    /// wait() or the destructor completes it.
    void shutdown();
    /// Blocks until a shutdown was asked for, then completes it (as shutdown() does).
    void wait();

    std::uint16_t data_port() const noexcept;
    std::uint16_t admin_port() const noexcept;
    metrics::registry& metrics() noexcept;
    /// The clock of cache freshness and of the shield's decisions. Tests move it forward
    /// (time_source::advance) instead of sleeping; nothing else should.
    time_source& time() noexcept;
    /// What forwarded image writes do to the cache (gateway/image/writes.hpp), for the
    /// forward handler and tests.
    write_effects& writes() noexcept;
    /// The executor of I/O worker `worker` (< server.threads): for embedders and tests that
    /// need to run something on an I/O thread.
    asio::any_io_executor executor(std::size_t worker) const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace imagegate::gateway
