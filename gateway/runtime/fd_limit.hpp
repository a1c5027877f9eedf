// The process's open-files limit against what the configuration may open: raises the soft
// RLIMIT_NOFILE to the hard limit at start-up and decides how many data connections fit.
#pragma once

#include "config/settings.hpp"

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

namespace spdlog {
class logger;
}

namespace imagegate::gateway {

/// Descriptors the configuration may hold open at once.
struct fd_needs {
    std::uint64_t data = 0;   ///< server.max_connections
    std::uint64_t admin = 0;  ///< the admin listener's connections
    std::uint64_t upstream =
        0;  ///< I/O threads × upstream.max_connections (one pool each, at worst)
    /// Everything else: stdio, both listening sockets, each listener's spare descriptor, each
    /// I/O thread's event loop (epoll, eventfd, timerfd), the signal pipe, and room for files
    /// and resolver sockets opened briefly.
    std::uint64_t fixed = 0;

    std::uint64_t total() const noexcept { return data + admin + upstream + fixed; }
    friend bool operator==(const fd_needs&, const fd_needs&) = default;
};
std::ostream& operator<<(std::ostream& os, const fd_needs& n);

/// The admin listener's connection limit (its server_options.max_connections).
inline constexpr std::uint64_t admin_max_connections = 64;
/// Fewest data connections worth starting with: when the limit leaves fewer, start-up fails.
inline constexpr std::uint64_t min_data_connections = 16;

fd_needs fd_needs_of(const config::settings& s, unsigned threads);

/// What start-up does with a given limit.
struct fd_plan {
    /// Data connections to accept at most: server.max_connections, or fewer so that the
    /// admin listener and the upstream pools always find descriptors (connections over it
    /// get the usual 503).
    std::uint64_t data_connections = 0;
    /// The configuration does not fit the limit: data_connections was lowered.
    bool capped = false;
    /// Not even min_data_connections fit: refuse to start.
    bool too_low = false;

    friend bool operator==(const fd_plan&, const fd_plan&) = default;
};
std::ostream& operator<<(std::ostream& os, const fd_plan& p);

/// Pure: the plan for `needs` under an open-files limit of `limit` descriptors.
fd_plan plan_fds(const fd_needs& needs, std::uint64_t limit) noexcept;

/// The soft and hard RLIMIT_NOFILE (RLIM_INFINITY as UINT64_MAX).
struct open_files_limit {
    std::uint64_t soft = 0;
    std::uint64_t hard = 0;
};

/// Raises the soft limit to the hard one (capped at 1 Mi descriptors, Linux's default
/// fs.nr_open); returns the limits before and after. Never lowers anything.
std::pair<open_files_limit, open_files_limit> raise_open_files_limit();

/// Start-up: raises the limit, plans, and logs the outcome (a warning naming the numbers and
/// the fix when capped). Returns the data listener's connection limit, or throws
/// std::runtime_error with a clear message when the limit is too low to start.
std::uint64_t apply_fd_limit(const config::settings& s, unsigned threads, spdlog::logger& log);

}  // namespace imagegate::gateway
