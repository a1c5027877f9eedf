// Counters, gauges and the latency histogram of the upstream client and its pool, for the
// metrics page. Lock-free: every field is a relaxed atomic, read without a consistent snapshot.
#pragma once

#include "gateway/core/errc.hpp"
#include "gateway/metrics/registry.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::upstream {

/// Upstream latency (request written → full response read): the project's one histogram.
using latency_histogram = metrics::histogram;

/// All upstream counters. Owned by the client (shared with its pool through a shared_ptr so
/// handlers that outlive the client stay valid). Thread-safety: any thread, relaxed atomics.
struct stats {
    using counter = std::atomic<std::uint64_t>;

    /// `workers`: how many per-worker pools the client runs (one counter each below).
    explicit stats(std::size_t workers = 1) : exchanges_by_worker(workers) {}

    // Responses by status (one exchange that produced a complete response counts once).
    counter responses_2xx{0};    ///< any 2xx
    counter responses_3xx{0};    ///< any 3xx (the API does not redirect; a sign of a bad base URL)
    counter responses_4xx{0};    ///< any 4xx, including the three below
    counter responses_5xx{0};    ///< any 5xx
    counter responses_other{0};  ///< 1xx final or outside 100..599
    counter responses_200{0};    ///< exactly 200 (image found)
    counter responses_404{0};    ///< exactly 404 (image not found, code 5404: cached negatively)
    counter responses_429{0};    ///< exactly 429 (rate limited: the shield pauses the budget)

    // Connections.
    counter connects{0};          ///< connections that completed resolve+connect(+handshake)
    counter tls_resumptions{0};   ///< of those, TLS handshakes that resumed an earlier session
    counter connect_failures{0};  ///< resolve or TCP connect failed (not TLS, not timeout)
    counter tls_failures{0};      ///< TLS handshake or certificate verification failed
    counter timeouts{0};          ///< connect or exchange deadline passed (any phase)
    counter too_large{0};         ///< response body over max_body_bytes
    counter protocol_errors{0};   ///< bad HTTP, truncated body, reset mid-answer
    counter reuses{0};            ///< exchanges sent on a connection that served one before
    counter unread_discards{0};   ///< idle connections closed because they were readable
    counter interim_skipped{0};   ///< 1xx heads read and skipped before final responses
    counter idle_closes{0};       ///< idle connections closed after idle_timeout
    counter retired{0};           ///< connections closed after max_requests_per_connection

    // Pool.
    counter acquire_waits{0};     ///< acquires that found no idle connection and had to wait
    counter acquire_timeouts{0};  ///< acquires that gave up (errc::pool_exhausted)
    counter in_use{0};            ///< gauge: connections lent out right now
    counter idle{0};              ///< gauge: connections parked idle right now

    /// Exchanges started (leases taken) by each I/O worker's pool, indexed by worker: where
    /// the misses ran.
    std::vector<counter> exchanges_by_worker;

    latency_histogram latency;  ///< write-to-last-byte time of complete exchanges

    /// Counts one complete response by status.
    void count_status(unsigned status) noexcept;

    /// Counts one failed connect or exchange by its classification (connect_failures,
    /// tls_failures, timeouts, too_large or protocol_errors; other values are ignored).
    void count_error(errc e) noexcept;

    /// Appends every counter and the histogram as Prometheus text, names prefixed
    /// `imagegate_upstream_`.
    void render(std::string& out) const;
};

}  // namespace imagegate::upstream
