// The names of a warm job's states, as GET /cache/warm and the state file spell them.
#include "gateway/warm/job.hpp"

#include <array>
#include <utility>

namespace imagegate::warm {
namespace {

constexpr std::array<std::pair<job_state, std::string_view>, 6> names{{
    {job_state::running, "running"},
    {job_state::waiting, "waiting"},
    {job_state::done, "done"},
    {job_state::failed, "failed"},
    {job_state::cancelled, "cancelled"},
    {job_state::interrupted, "interrupted"},
}};

}  // namespace

std::string_view to_string(job_state s) noexcept {
    for (const auto& [state, name] : names) {
        if (state == s) {
            return name;
        }
    }
    return "unknown";
}

std::optional<job_state> parse_job_state(std::string_view s) noexcept {
    for (const auto& [state, name] : names) {
        if (name == s) {
            return state;
        }
    }
    return std::nullopt;
}

}  // namespace imagegate::warm
