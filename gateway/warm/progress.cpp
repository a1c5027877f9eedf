// How a job's progress reads: its state's name, the rate, and the JSON of GET /cache/warm.
#include "gateway/http/envelope.hpp"
#include "gateway/warm/warmer.hpp"

#include <cstdio>

namespace imagegate::warm {

std::string progress_json(const std::vector<job_progress>& jobs) {
    std::string out = R"({"success":true,"errors":[],"messages":[],"result":{"jobs":[)";
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        const auto& p = jobs[i];
        const auto started =
            std::chrono::duration_cast<std::chrono::milliseconds>(p.started.time_since_epoch())
                .count();
        char rate[32];
        std::snprintf(rate, sizeof rate, "%.1f", p.rate);
        out += i ? "," : "";
        out += R"({"account":")" + p.account + R"(","state":")" + std::string(to_string(p.state)) +
               R"(","pages":)" + std::to_string(p.pages) + R"(,"images_stored":)" +
               std::to_string(p.stored) + R"(,"invalid":)" + std::to_string(p.invalid) +
               R"(,"refused":)" + std::to_string(p.refused) + R"(,"calls":)" +
               std::to_string(p.calls) + R"(,"l2_written":)" + std::to_string(p.l2_written) +
               R"(,"l2_failed":)" + std::to_string(p.l2_failed) + R"(,"per_page":)" +
               std::to_string(p.per_page) + R"(,"position":)";
        out += p.position.empty() ? std::string("null") : "\"" + p.position + "\"";
        out += R"(,"total":)";
        out += p.total ? std::to_string(*p.total) : std::string("null");
        out += R"(,"rate_per_s":)" + std::string(rate) + R"(,"started_unix_ms":)" +
               std::to_string(started) + R"(,"elapsed_ms":)" + std::to_string(p.elapsed.count()) +
               R"(,"last_error":)";
        if (p.last_error.empty()) {
            out += "null";
        } else {
            out += '"';
            gateway::append_json_escaped(out, p.last_error);
            out += '"';
        }
        out += '}';
    }
    return out + "]}}";
}

double per_second(std::uint64_t n, clock::duration elapsed) noexcept {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
    return ms <= 0 ? 0.0 : static_cast<double>(n) * 1000.0 / static_cast<double>(ms);
}

}  // namespace imagegate::warm
