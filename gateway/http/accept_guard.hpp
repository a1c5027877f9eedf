// What a listener does when accept() fails: counts the failure by cause, logs each episode
// of failures once (not each attempt), and keeps one spare descriptor so that, when the
// open-files limit is reached, pending connections are still answered and closed instead of
// waiting in the kernel's backlog until the client gives up.
#pragma once

#include <boost/system/error_code.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace imagegate::gateway {

/// Failed accepts since start, by cause.
struct accept_error_counts {
    std::uint64_t emfile = 0;  ///< the process's open-files limit (RLIMIT_NOFILE) was reached
    std::uint64_t enfile = 0;  ///< the system's file table was full
    std::uint64_t other = 0;   ///< anything else (ENOBUFS, ENOMEM, …)
};

/// Owned by one listener. on_failure(), on_success() and spend_reserve() must be called on
/// the listener's acceptor strand only; counts() may be called from any thread.
class accept_guard {
public:
    /// `name` ("data", "admin") prefixes the log lines. Opens the spare descriptor.
    accept_guard(std::string name, std::shared_ptr<spdlog::logger> log);
    ~accept_guard();
    accept_guard(const accept_guard&) = delete;
    accept_guard& operator=(const accept_guard&) = delete;

    /// After a failed accept: counts it and, if it starts an episode, logs it (at most once
    /// per log_interval). Returns true when the cause is descriptor exhaustion (EMFILE or
    /// ENFILE), which spend_reserve() may relieve for one connection.
    bool on_failure(const boost::system::error_code& ec);
    /// After a successful accept: ends the episode (logging how long it lasted, if its start
    /// was logged) and takes the spare descriptor back if it was lost.
    void on_success();

    /// Closes the spare descriptor, runs `take_one()` (which accepts one pending connection
    /// and refuses it, using the descriptor just freed), then opens the spare again. Returns
    /// false without calling `take_one` when no spare is held (another thread took its slot
    /// before it could be reopened); the caller then backs off.
    template <class F>
    bool spend_reserve(F&& take_one) {
        if (!release_reserve()) {
            return false;
        }
        take_one();
        reacquire_reserve();
        return true;
    }

    accept_error_counts counts() const noexcept;

    /// At most one "cannot accept" line per this interval; episodes in between are counted only.
    static constexpr std::chrono::seconds log_interval{10};

private:
    bool release_reserve() noexcept;
    void reacquire_reserve() noexcept;

    std::string name_;
    std::shared_ptr<spdlog::logger> log_;
    int reserve_ = -1;  // a descriptor of /dev/null, or -1

    std::atomic<std::uint64_t> emfile_{0};
    std::atomic<std::uint64_t> enfile_{0};
    std::atomic<std::uint64_t> other_{0};

    // The current episode (acceptor strand only).
    bool failing_ = false;
    bool episode_logged_ = false;
    std::uint64_t episode_failures_ = 0;
    std::chrono::steady_clock::time_point episode_start_{};
    std::chrono::steady_clock::time_point last_logged_{};
    bool ever_logged_ = false;
};

}  // namespace imagegate::gateway
