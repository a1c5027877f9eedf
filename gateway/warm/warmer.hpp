// Warm jobs: page through an account's v2 listing at background priority through the gate
// and store every valid listed image as its detail entry; progress, cancel, resume, metrics.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/image/handler.hpp"
#include "gateway/warm/job.hpp"

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

namespace imagegate::fleet {
class l2_cache;
}

namespace imagegate::warm {

using clock = std::chrono::steady_clock;

/// `{"success":true,…,"result":{"jobs":[…]}}` for GET /cache/warm.
std::string progress_json(const std::vector<job_progress>& jobs);

/// Images per second: `n` over `elapsed`, 0 before a millisecond passed.
double per_second(std::uint64_t n, clock::duration elapsed) noexcept;

/// What POST /cache/warm asks for.
struct start_request {
    std::string account;
    /// Items per page; nothing: the resumed job's own, or default_per_page for a new one.
    std::optional<std::size_t> per_page;
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

/// Where a warmer's entries go besides L1, and where its jobs are kept.
struct warmer_options {
    /// The fleet tier's L2 (null without `[redis]`): every entry a job stores in L1 is written
    /// there too, a page at a time, before the job goes on.
    std::shared_ptr<fleet::l2_cache> l2;
    /// `[warm] state_file`: the jobs are written there after every stored page and when they
    /// end, and read back at start-up (as interrupted, cancelled, failed or done: a POST
    /// resumes one). Empty: in memory only.
    std::string state_file;
};

/// Owned by the composition root, next to the services it references (which outlive it).
/// Jobs run on the I/O worker given to start() (the upstream client needs a worker); the
/// workers stop before the warmer is destroyed.
/// Thread-safety: every member may be called from any thread.
class warmer {
public:
    /// `policy` gives the TTLs (drafts per the draft rule) and the request timeout; `now` and
    /// `wall` are the clocks rates and start times are read from (tests inject them). With a
    /// state file, its jobs are read here (blocking: at start-up).
    warmer(cache::sharded_cache& cache, upstream::client& client,
           std::shared_ptr<admission::gate> gate, gateway::image_policy policy,
           std::shared_ptr<spdlog::logger> log, warmer_options opts = {},
           std::function<clock::time_point()> now = {},
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
    /// Ends every job (the gateway stops): each is kept as interrupted, resumable.
    void shutdown();
    /// imagegate_warm_* metrics in Prometheus text.
    void render_metrics(std::string& out) const;

    struct core;

private:
    std::shared_ptr<core> core_;
};

}  // namespace imagegate::warm
