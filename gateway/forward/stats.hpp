// The forwarding handler's counters and their Prometheus text: forwarded calls by method and
// status class, refusals by reason, bytes both ways.
#pragma once

#include <boost/beast/http/verb.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace imagegate::gateway {

/// Why a forward was not sent upstream (the `reason` label).
enum class forward_refused : std::uint8_t {
    unauthorized,
    not_granted,
    forbidden_account,
    budget,
    paused,
    body,  ///< the client's body failed (413, 408, 400) or the client left
};

/// Owned by the handler; relaxed atomics, safe from any thread.
struct forward_stats {
    static constexpr std::array<std::string_view, 7> methods{"GET",   "HEAD",   "POST", "PUT",
                                                             "PATCH", "DELETE", "other"};
    /// "2xx".."5xx", "1xx", and "error" (no upstream answer).
    static constexpr std::array<std::string_view, 6> classes{"1xx", "2xx", "3xx",
                                                             "4xx", "5xx", "error"};
    static constexpr std::array<std::string_view, 6> reasons{
        "unauthorized", "not_granted", "forbidden_account", "budget", "paused", "body"};

    std::array<std::array<std::atomic<std::uint64_t>, classes.size()>, methods.size()> calls{};
    std::array<std::atomic<std::uint64_t>, reasons.size()> refused{};
    std::atomic<std::uint64_t> request_bytes{0};   ///< body bytes sent upstream
    std::atomic<std::uint64_t> response_bytes{0};  ///< body bytes received from upstream
    std::atomic<std::uint64_t> cut{0};             ///< answers whose body could not be completed

    void count_call(boost::beast::http::verb method, unsigned status) noexcept;
    void count(forward_refused why) noexcept {
        refused[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
    }
    void render(std::string& out) const;
};

}  // namespace imagegate::gateway
