// The process's metrics: request counters by route and status, a latency histogram, and
// pluggable sources (cache, upstream) rendered together as Prometheus text on /metrics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::metrics {

/// Fixed-bucket histogram of durations; relaxed atomics, lock-free to record.
class histogram {
public:
    /// Upper bounds in seconds; +Inf is implicit.
    static constexpr std::array<double, 12> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                   0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
    void observe(std::chrono::nanoseconds d) noexcept;
    /// Appends `<name>_bucket{<labels>le="…"}`, `_sum` and `_count` lines.
    void render(std::string& out, std::string_view name, std::string_view labels) const;

private:
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets_{};
    std::atomic<std::uint64_t> sum_ns_{0};
    std::atomic<std::uint64_t> count_{0};
};

/// Owned by the composition root and passed by reference. Thread-safe: recording uses
/// relaxed atomics; sources are registered at start-up, before any rendering.
class registry {
public:
    /// Route labels (`route="…"`); the session reports one per exchange.
    static constexpr std::array<std::string_view, 8> routes{
        "image", "purge", "healthz", "readyz", "metrics", "not_found", "invalid", "other"};
    /// Status labels kept individually; anything else counts as "other".
    static constexpr std::array<unsigned, 20> statuses{200, 204, 304, 400, 401, 403, 404,
                                                       405, 408, 413, 414, 429, 431, 500,
                                                       501, 502, 503, 504, 505, 0};

    void record(std::string_view route, unsigned status, std::chrono::nanoseconds d) noexcept;
    /// Adds a renderer called on every scrape (e.g. cache or upstream statistics).
    void add_source(std::function<void(std::string&)> source);
    /// Prometheus text exposition format 0.0.4.
    std::string render() const;

    std::uint64_t requests(std::string_view route, unsigned status) const noexcept;

private:
    std::array<std::array<std::atomic<std::uint64_t>, statuses.size()>, routes.size()>
        requests_{};
    histogram image_latency_;
    mutable std::mutex mu_;
    std::vector<std::function<void(std::string&)>> sources_;  // guarded by mu_
};

/// Appends one `name{labels} value` sample with its HELP/TYPE header when `help` is set.
void append_sample(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::uint64_t value, std::string_view labels = {});

}  // namespace imagegate::metrics
