// The composition root: builds every component from settings, runs the I/O workers, and
// shuts down gracefully. main() and the integration tests both drive it.
#pragma once

#include "gateway/core/time_source.hpp"
#include "config/settings.hpp"
#include "gateway/core/net.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <memory>

namespace spdlog {
class logger;
}

namespace imagegate::metrics {
class registry;
}

namespace imagegate::gateway {

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
    /// Handles signals (SIGINT/SIGTERM: shut down; SIGHUP: reload, which logs "reload not
    /// supported yet" for now), starts if start() was not called, and returns once a
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
    /// The executor of I/O worker `worker` (< server.threads): for embedders and tests that
    /// need to run something on an I/O thread.
    asio::any_io_executor executor(std::size_t worker) const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace imagegate::gateway
