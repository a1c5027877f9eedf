// The warm state file's text: the jobs' positions and counters, kept across restarts. The pure
// formatter and the strict parser, which reads the file as hostile input: bounded sizes,
// account ids and continuation tokens checked as POST /cache/warm checks them, every line
// refused on its own with a reason. No I/O (state_store.hpp); table-tested and fuzzed
// (tests/fuzz/state_fuzz.cpp).
//
// The format, version 1 (one job a line, fields in any order, separated by one space):
//   imagegate-warm-state 1
//   job account=<32 hex> state=<state> per_page=<10..10000> position=<token or empty>
//       pages=N stored=N invalid=N refused=N calls=N total=<N or empty> l2_written=N
//       l2_failed=N
// Unknown fields (a newer writer's, `[a-z0-9_]{1,32}=<printable>`) are ignored; another
// version in the first line refuses the file.
#pragma once

#include "gateway/warm/job.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::warm {

/// A state file larger than this is refused whole (64 jobs take under 32 KiB).
inline constexpr std::size_t max_state_bytes = 256 * 1024;
/// A job line longer than this (its newline not counted) is refused.
inline constexpr std::size_t max_state_line_bytes = 2048;
/// The first line: the format's name and version.
inline constexpr std::string_view state_header = "imagegate-warm-state 1";
/// The largest image count accepted as `total` (parse_image_count's bound).
inline constexpr std::uint64_t max_state_total = 1'000'000'000'000;

/// Why a line, or the whole file (line 0), was refused: our own words, never file bytes.
struct state_refusal {
    std::size_t line = 0;  ///< 1-based; 0: the whole file
    std::string reason;

    friend bool operator==(const state_refusal&, const state_refusal&) = default;
};

/// What a state file holds: the jobs of its valid lines, in file order (at most max_jobs, one
/// per account), and a refusal for every other line.
struct parsed_state {
    /// Only the fields the file keeps are set (account, state, per_page, position, the
    /// counters, total); the state as written (running and waiting included).
    std::vector<job_progress> jobs;
    std::vector<state_refusal> refusals;
};

/// Parses a state file's text.
parsed_state parse_state(std::string_view text);

/// The text of `jobs` (their first max_jobs), which parse_state reads back to the same
/// fields. Accounts and positions must be valid (they come from checked requests).
std::string format_state(const std::vector<job_progress>& jobs);

}  // namespace imagegate::warm
