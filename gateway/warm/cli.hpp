// `imagegate warm`: a client of a running gateway's admin API that starts a warm job and
// follows it with a progress line (rate, ETA) until it ends.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::warm {

/// The command line of `imagegate warm`, checked (pure; table-tested).
struct cli_options {
    std::string account;
    std::string admin_host = "127.0.0.1";
    std::string admin_port = "9090";
    std::string token_file;               ///< empty: $IMAGEGATE_ADMIN_TOKEN
    std::optional<std::size_t> per_page;  ///< nothing: the gateway decides (a resumed job's own)
    std::string resume_from;
    bool restart = false;
    bool help = false;
    std::string error;  ///< non-empty: a usage error
};
cli_options parse_cli(const std::vector<std::string>& args);

/// One job's line of GET /cache/warm, as the command shows it.
struct shown_job {
    std::string state;
    std::uint64_t pages = 0, stored = 0, invalid = 0, refused = 0, l2_failed = 0;
    std::optional<std::uint64_t> total;
    double rate = 0;
    std::string last_error;
};
/// The job of `account` in a GET /cache/warm body; nothing when absent or malformed.
std::optional<shown_job> find_job(std::string_view body, std::string_view account);

/// The progress line: a bar, counts, rate and ETA when the total is known.
std::string progress_line(const shown_job& j, bool bar);

/// Runs `imagegate warm ARGS…` (args without the program and `warm`); the exit code.
int run_warm_command(const std::vector<std::string>& args);

}  // namespace imagegate::warm
