// The access log: one line per exchange (every miss, error and refusal, a sample of the fresh
// cache hits), formatted and written by a thread of its own from a bounded queue.
#pragma once

#include "config/settings.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::gateway {

struct exchange_record;

/// The name of the logger access lines go through: the JSON format renders its messages as
/// structured members instead of one "msg" string (see logging.cpp).
inline constexpr std::string_view access_logger_name = "imagegate.access";

/// Counters of the access log (relaxed reads; not one consistent snapshot).
struct access_log_counters {
    std::uint64_t written = 0;      ///< lines handed to the logger
    std::uint64_t dropped = 0;      ///< lines lost because the queue was full
    std::uint64_t sampled_out = 0;  ///< fresh hits not logged by log.access_log_hit_sample
};

/// Text: `access data req=… GET "/path" status=200 cache="hit" dur_ms=0.123 bytes=512`, the
/// target without its query string, escaped and quoted. JSON: each field its own member.
/// Never headers. Each line's fields are copied into a fixed-size slot of the queue (the
/// target cut at `max_target_bytes`), so a request thread never allocates, formats or
/// writes: it copies a few hundred bytes under a short lock, or, when the writer has fallen
/// `capacity` lines behind, counts a drop and goes on.
/// Owned by the composition root, which destroys it after the I/O threads stopped; the
/// destructor writes what is queued. Thread-safety: observe() from the I/O workers of
/// `worker_count` (another thread works, on a shared slot); configure() and counters() from
/// any thread.
class access_log {
public:
    static constexpr std::size_t max_target_bytes = 384;
    static constexpr std::size_t default_capacity = 2048;

    /// Writes through a logger named access_logger_name sharing `log`'s sinks and level.
    access_log(const std::shared_ptr<spdlog::logger>& log, const config::log_settings& s,
               std::size_t worker_count, std::size_t capacity = default_capacity);
    ~access_log();
    access_log(const access_log&) = delete;
    access_log& operator=(const access_log&) = delete;

    /// Queues the line of one exchange, or counts it as sampled out or dropped.
    void observe(const exchange_record& rec) noexcept;
    /// Applies log.access_log, log.access_log_hit_sample and log.format (a reload).
    void configure(const config::log_settings& s) noexcept;
    access_log_counters counters() const noexcept;
    /// Appends the counters in Prometheus text.
    void render_metrics(std::string& out) const;
    /// Blocks until every line queued so far is written (tests, shutdown).
    void flush();

private:
    struct line;
    /// Per-worker hit sampling state: touched by its worker only, read by counters().
    struct alignas(64) hit_slot {
        std::atomic<std::uint64_t> countdown{0};
        std::atomic<std::uint64_t> sampled_out{0};
    };

    bool take_hit(hit_slot& slot) noexcept;
    void enqueue(const exchange_record& rec) noexcept;
    void run();
    void write(const line& l) const;

    std::shared_ptr<spdlog::logger> log_;
    std::atomic<bool> enabled_;
    std::atomic<std::uint64_t> hit_sample_;
    std::atomic<bool> json_;
    std::vector<hit_slot> slots_;  // one per worker, and a last one shared by other threads
    std::atomic<std::uint64_t> written_{0};
    std::atomic<std::uint64_t> dropped_{0};

    std::mutex mu_;
    std::condition_variable wake_;     // the writer: lines queued, or stop
    std::condition_variable drained_;  // flush(): the queue emptied
    std::vector<line> ring_;           // guarded by mu_
    std::size_t head_ = 0;             // guarded by mu_: oldest queued line
    std::size_t size_ = 0;             // guarded by mu_
    std::size_t in_flight_ = 0;        // guarded by mu_: taken by the writer, not yet written
    bool stop_ = false;                // guarded by mu_
    std::thread writer_;               // last: started once everything above exists
};

}  // namespace imagegate::gateway
