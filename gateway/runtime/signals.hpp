// Process signals as calls: SIGINT and SIGTERM ask for a graceful stop, SIGHUP for a reload
// of the configuration. The composition root decides what each means.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/signal_set.hpp>

#include <functional>
#include <memory>

namespace imagegate::gateway {

/// What a signal asks for. Both run on the handler's executor (an I/O worker), so they
/// must not block: they post work or notify a waiting thread.
struct signal_hooks {
    /// SIGINT or SIGTERM (the signal number): stop gracefully. Called once.
    std::function<void(int)> stop;
    /// SIGHUP: reload. Called for every SIGHUP until a stop signal arrives.
    std::function<void()> reload;
};

/// Owns the signal registration. From construction on, SIGINT, SIGTERM and SIGHUP no
/// longer take their default action (kill the process): they are delivered to the hooks
/// once start() was called. Owned by the composition root; destroy it only once the
/// executor's thread has stopped (or the hooks' targets are still alive).
/// Thread-safety: construct, start() and destroy from one thread; cancel() from any thread;
/// the hooks run on `ex`.
class signal_handler {
public:
    /// Throws boost::system::system_error if the signals cannot be registered.
    signal_handler(asio::any_io_executor ex, signal_hooks hooks);
    ~signal_handler();
    signal_handler(const signal_handler&) = delete;
    signal_handler& operator=(const signal_handler&) = delete;

    /// Starts delivering signals to the hooks.
    void start();
    /// Stops delivering (the signals stay caught, and ignored, until destruction), so that
    /// `ex`'s context can run out of work. Posted to `ex`: asynchronous.
    void cancel();

private:
    struct state;
    static void arm(const std::shared_ptr<state>& st);
    std::shared_ptr<state> state_;
};

}  // namespace imagegate::gateway
