// Fires N concurrent GETs at one target from one io_context (one connection each) and
// records status, Cache-Status and latency of every answer. For herd and flood tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace imagegate::testing {

struct herd_result {
    unsigned status = 0;  ///< 0: no answer (connect/read error or timeout)
    std::string cache_status;
    std::string retry_after;
    std::string retry_after_ms;
    std::string should_retry;  ///< x-should-retry
    std::chrono::microseconds latency{};
};

/// Sends `targets.size()` requests at once, each on its own connection to 127.0.0.1:port,
/// all started before any answer is read. `hang_up` of them (the first ones) close their
/// connection right after sending. Bounded by `timeout` overall.
/// `headers[i]`, when given, is added to request i (complete lines, each ending in CRLF).
std::vector<herd_result> run_herd(std::uint16_t port, const std::vector<std::string>& targets,
                                  std::size_t hang_up = 0,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(20),
                                  const std::vector<std::string>& headers = {});

/// The median of the answered latencies.
std::chrono::microseconds median_latency(const std::vector<herd_result>& r);

}  // namespace imagegate::testing
