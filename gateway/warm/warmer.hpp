// Warm jobs: page through an account's v2 listing at background priority through the gate
// and store every valid listed image as its detail entry; progress, cancel, resume, metrics.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/image/handler.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::cache {
class sharded_cache;
}

namespace imagegate::upstream {
class client;
}

namespace imagegate::admission {
class gate;
}

namespace imagegate::warm {

using clock = std::chrono::steady_clock;

/// Page sizes the v2 listing takes (upstream-api.md "Listing").
inline constexpr std::size_t min_per_page = 10;
inline constexpr std::size_t max_per_page = 10000;
/// Jobs remembered (running or ended) at once; the oldest ended one goes first.
inline constexpr std::size_t max_jobs = 64;

enum class job_state {
    running,    ///< calling, or about to
    waiting,    ///< refused by the budget or paused by an upstream 429: resumes by itself
    done,       ///< the last page was stored
    failed,     ///< an answer the job cannot go past (see last_error); resumable
    cancelled,  ///< DELETE /cache/warm, or the gateway stopping; resumable
};
std::string_view to_string(job_state s) noexcept;

/// One job as GET /cache/warm shows it.
struct job_progress {
    std::string account;
    job_state state = job_state::running;
    std::uint64_t pages = 0;    ///< listing pages stored
    std::uint64_t stored = 0;   ///< images stored as detail entries
    std::uint64_t invalid = 0;  ///< listed items refused by validation (never stored)
    std::uint64_t refused = 0;  ///< calls the gate refused (budget reserve or pause)
    std::uint64_t calls = 0;    ///< upstream calls made (pages, retries, the count)
    std::size_t per_page = 0;
    /// The continuation token of the next page; empty: the first page (or done).
    std::string position;
    /// Images in the account (its stats), when the upstream told: for an ETA.
    std::optional<std::uint64_t> total;
    double rate = 0;  ///< images stored per second since this run started
    std::chrono::system_clock::time_point started{};
    std::chrono::milliseconds elapsed{};  ///< of this run
    std::string last_error;               ///< empty when none; never upstream bytes
};

/// `{"success":true,…,"result":{"jobs":[…]}}` for GET /cache/warm.
std::string progress_json(const std::vector<job_progress>& jobs);

/// Images per second: `n` over `elapsed`, 0 before a millisecond passed.
double per_second(std::uint64_t n, clock::duration elapsed) noexcept;

/// What POST /cache/warm asks for.
struct start_request {
    std::string account;
    std::size_t per_page = 1000;
    /// Start from this continuation token instead of the remembered position.
    std::optional<std::string> resume_from;
    /// Forget the remembered position and counters: from the first page.
    bool restart = false;
};

enum class start_result {
    started,  ///< a new job, from the first page (or `resume_from`)
    resumed,  ///< an ended, unfinished job goes on from its position with its counters
    running,  ///< one runs for the account already: nothing changed (409)
    full,     ///< max_jobs jobs run for other accounts (409)
};

/// Owned by the composition root, next to the services it references (which outlive it).
/// Jobs run on the I/O worker given to start() (the upstream client needs a worker).
/// Thread-safety: every member may be called from any thread.
class warmer {
public:
    /// `policy` gives the TTLs (drafts per the draft rule) and the request timeout; `now` and
    /// `wall` are the clocks rates and start times are read from (tests inject them).
    warmer(cache::sharded_cache& cache, upstream::client& client,
           std::shared_ptr<admission::gate> gate, gateway::image_policy policy,
           std::shared_ptr<spdlog::logger> log, std::function<clock::time_point()> now = {},
           std::function<std::chrono::system_clock::time_point()> wall = {});
    ~warmer();
    warmer(const warmer&) = delete;
    warmer& operator=(const warmer&) = delete;

    /// Starts or resumes the account's job on `ex` (a worker's executor). `r` is checked by
    /// the caller (account id, per_page range, token shape).
    start_result start(asio::any_io_executor ex, start_request r);
    /// Cancels the account's running job; false when none runs. Its position is kept.
    bool cancel(std::string_view account);
    /// Every remembered job, oldest first.
    std::vector<job_progress> jobs() const;
    /// Cancels every job (the gateway stops).
    void shutdown();
    /// imagegate_warm_* metrics in Prometheus text.
    void render_metrics(std::string& out) const;

    struct core;

private:
    std::shared_ptr<core> core_;
};

}  // namespace imagegate::warm
