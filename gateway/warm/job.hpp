// What a warm job is, apart from how it runs: its states, the progress GET /cache/warm shows
// and the state file keeps, and the limits the API, the state file and the jobs share. Pure.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imagegate::warm {

/// Page sizes the v2 listing takes (upstream-api.md "Listing").
inline constexpr std::size_t min_per_page = 10;
inline constexpr std::size_t max_per_page = 10000;
/// The page size of a new job that names none.
inline constexpr std::size_t default_per_page = 1000;
/// Jobs remembered (running or ended) at once; the oldest ended one goes first.
inline constexpr std::size_t max_jobs = 64;

enum class job_state {
    running,      ///< calling, or about to
    waiting,      ///< refused by the budget or paused by an upstream 429: resumes by itself
    done,         ///< the last page was stored
    failed,       ///< an answer the job cannot go past (see last_error); resumable
    cancelled,    ///< DELETE /cache/warm; resumable
    interrupted,  ///< the gateway stopped (or died) while the job ran; resumable
};
std::string_view to_string(job_state s) noexcept;
/// The state named `s` (as to_string spells it); nothing for any other text.
std::optional<job_state> parse_job_state(std::string_view s) noexcept;
/// Running or waiting: the job's coroutine is alive.
constexpr bool is_live(job_state s) noexcept {
    return s == job_state::running || s == job_state::waiting;
}

/// One job as GET /cache/warm shows it and the state file keeps it.
struct job_progress {
    std::string account;
    job_state state = job_state::running;
    std::uint64_t pages = 0;    ///< listing pages stored
    std::uint64_t stored = 0;   ///< images stored as detail entries
    std::uint64_t invalid = 0;  ///< listed items refused by validation (never stored)
    std::uint64_t refused = 0;  ///< calls the gate refused (budget reserve or pause)
    std::uint64_t calls = 0;    ///< upstream calls made (pages, retries, the count)
    /// Of the stored entries, those written to the fleet's L2 (0 without `[redis]`).
    std::uint64_t l2_written = 0;
    /// Those not written to L2: Redis down, slow, breaker open, or an error reply.
    std::uint64_t l2_failed = 0;
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

}  // namespace imagegate::warm
