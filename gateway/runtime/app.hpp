// The composition root: builds every component from settings, runs the io_context threads,
// and shuts down gracefully. main() and the integration tests both drive it.
#pragma once

#include "config/settings.hpp"

#include <cstdint>
#include <memory>

namespace spdlog {
class logger;
}

namespace imagegate::metrics {
class registry;
}

namespace imagegate::gateway {

/// Owns the process's services. Construct (binds the listeners: throws on failure), start(),
/// then run_until_signal() or shutdown(). Not copyable; shutdown() is idempotent and
/// thread-safe; the destructor shuts down.
class app {
public:
    app(config::settings s, std::shared_ptr<spdlog::logger> log);
    ~app();
    app(const app&) = delete;
    app& operator=(const app&) = delete;

    /// Starts the listeners and the I/O threads; ready afterwards.
    void start();
    /// Blocks until SIGINT or SIGTERM, then shuts down. Returns the process exit code.
    int run_until_signal();
    /// Graceful: stop accepting, let in-flight requests finish within
    /// server.drain_timeout, close the rest, join the threads.
    void shutdown();

    std::uint16_t data_port() const noexcept;
    std::uint16_t admin_port() const noexcept;
    metrics::registry& metrics() noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace imagegate::gateway
