// The process's metrics: request counters by route and status, image latency histograms by
// cache class, and
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
#include <tuple>
#include <vector>

namespace imagegate::metrics {

/// Fixed-bucket histogram of durations (Prometheus `histogram`), lock-free to record.
/// Thread-safety: observe() and render() may run concurrently from any thread; a render may
/// see an observation in one bucket before another (relaxed), which Prometheus tolerates.
class histogram {
public:
    /// Upper bounds in microseconds, ascending; an implicit +Inf bucket follows.
    using bounds_type = std::array<std::uint64_t, 12>;
    /// Upstream exchanges: 5 ms .. 30 s.
    static constexpr bounds_type slow_bounds{5'000,     10'000,    25'000,     50'000,
                                             100'000,   250'000,   500'000,    1'000'000,
                                             2'500'000, 5'000'000, 10'000'000, 30'000'000};
    /// Requests answered from memory: 0.5 ms .. 5 s.
    static constexpr bounds_type fast_bounds{500,     1'000,   2'500,     5'000,
                                             10'000,  25'000,  50'000,    100'000,
                                             250'000, 500'000, 1'000'000, 5'000'000};

    explicit histogram(const bounds_type& bounds_us = slow_bounds) noexcept : bounds_(bounds_us) {}

    void observe(std::chrono::steady_clock::duration d) noexcept;
    /// Appends `# HELP`/`# TYPE` (unless `help` is empty: another series of the same family),
    /// `<name>_bucket{le="0.005"} N` … `{le="+Inf"}` (cumulative), `<name>_sum` in seconds and
    /// `<name>_count` (equal to the +Inf bucket). `labels` (`cache="hit"`) go on every sample.
    void render(std::string& out, std::string_view name, std::string_view help,
                std::string_view labels = {}) const;
    std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

private:
    bounds_type bounds_;
    std::array<std::atomic<std::uint64_t>, std::tuple_size_v<bounds_type> + 1> buckets_{};
    std::atomic<std::uint64_t> sum_us_{0};
    std::atomic<std::uint64_t> count_{0};
};

/// Owned by the composition root and passed by reference. Thread-safe: recording uses
/// relaxed atomics; sources are registered at start-up, before any rendering.
class registry {
public:
    /// Route labels (`route="…"`); the session reports one per exchange.
    static constexpr std::array<std::string_view, 10> routes{
        "image",     "purge",   "healthz", "readyz",  "metrics",
        "not_found", "invalid", "reload",  "forward", "other"};
    /// Status labels kept individually; anything else counts as "other".
    static constexpr std::array<unsigned, 20> statuses{200, 204, 304, 400, 401, 403, 404,
                                                       405, 408, 413, 414, 429, 431, 500,
                                                       501, 502, 503, 504, 505, 0};

    /// The `cache` label of image answers: how the answer was made, from its status and the
    /// Cache-Status the image handler set (gateway/image/impl.hpp).
    static constexpr std::array<std::string_view, 7> cache_classes{"hit",     "stale", "miss", "l2",
                                                                   "refused", "error", "other"};
    /// Index into cache_classes: "hit" (fresh or cached not-found), "stale" (stale-while-
    /// revalidate, stale-if-error), "l2" (the fleet's Redis), "miss" (fetched upstream, or
    /// waited for another request's fetch), "refused" (401, 403, 429: client key, budget,
    /// pause), "error" (any other error answer, a client gone), "other" (none of these).
    /// A few byte compares: no allocation, no lock.
    static std::size_t cache_class(unsigned status, std::string_view cache_status) noexcept;

    /// Counts one exchange; an image answer's latency goes to the histogram of its cache
    /// class (three relaxed atomic adds).
    void record(std::string_view route, unsigned status, std::chrono::nanoseconds d,
                std::string_view cache_status = {}) noexcept;
    /// Adds a renderer called on every scrape (e.g. cache or upstream statistics).
    void add_source(std::function<void(std::string&)> source);
    /// Prometheus text exposition format 0.0.4.
    std::string render() const;

    std::uint64_t requests(std::string_view route, unsigned status) const noexcept;

private:
    std::array<std::array<std::atomic<std::uint64_t>, statuses.size()>, routes.size()> requests_{};
    std::array<histogram, cache_classes.size()> image_latency_{
        histogram{histogram::fast_bounds}, histogram{histogram::fast_bounds},
        histogram{histogram::fast_bounds}, histogram{histogram::fast_bounds},
        histogram{histogram::fast_bounds}, histogram{histogram::fast_bounds},
        histogram{histogram::fast_bounds}};
    mutable std::mutex mu_;
    std::vector<std::function<void(std::string&)>> sources_;  // guarded by mu_
};

/// Appends the `# HELP` and `# TYPE` lines of a metric family.
void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help);

/// Appends one `name{labels} value` sample with its HELP/TYPE header when `help` is set.
void append_sample(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::uint64_t value, std::string_view labels = {});

}  // namespace imagegate::metrics
