// The fleet gate's Prometheus text and the sizing of its local fallback.
#include "gateway/fleet/budget_gate.hpp"

#include <algorithm>
#include <stdexcept>

namespace imagegate::fleet {

namespace {

std::uint64_t share(std::uint64_t total, std::uint32_t instances) {
    return std::max<std::uint64_t>(1, total / instances);
}

/// `text` with every `from` replaced by `to`.
std::string renamed(std::string text, std::string_view from, std::string_view to) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
    }
    return text;
}

}  // namespace

admission::local_gate_options fallback_options(const fleet_gate_options& o) {
    if (o.instances == 0) {
        throw std::invalid_argument("fleet budget: instances must be at least 1");
    }
    auto local = o.gate;
    local.budget.budget = share(o.gate.budget.budget, o.instances);
    local.budget.burst = std::min(share(o.gate.budget.burst, o.instances), local.budget.budget);
    local.unproven_budget = share(o.gate.unproven_budget, o.instances);
    return local;
}

void render_fleet_budget_stats(std::string& out, const fleet_budget_stats& s) {
    using metrics::append_header;
    using metrics::append_sample;
    constexpr auto relaxed = std::memory_order_relaxed;
    // The decisions made in Redis have the local gate's vocabulary; their own names keep the
    // two apart (imagegate_budget_* is what the fallback decided).
    std::string decisions;
    admission::render_stats(decisions, *s.decisions);
    out += renamed(std::move(decisions), "imagegate_budget_", "imagegate_fleet_budget_");

    append_header(out, "imagegate_fleet_budget_fallback_total", "counter",
                  "Reservations decided by the local 1/N budget because Redis was not usable.");
    const std::pair<const char*, const fleet_budget_stats::counter*> reasons[] = {
        {"reason=\"down\"", &s.fallback_down},
        {"reason=\"timeout\"", &s.fallback_timeout},
        {"reason=\"error\"", &s.fallback_error},
        {"reason=\"invalid\"", &s.fallback_invalid}};
    for (const auto& [label, c] : reasons) {
        append_sample(out, "imagegate_fleet_budget_fallback_total", "", "", c->load(relaxed),
                      label);
    }
    append_sample(out, "imagegate_fleet_budget_on_fallback", "gauge",
                  "1 while reservations are decided locally (Redis not usable).",
                  s.on_fallback.load(relaxed) ? 1 : 0);
    s.script_latency.render(out, "imagegate_fleet_budget_script_seconds",
                            "Round trip of the fleet reservation script (replies only).");
    append_header(out, "imagegate_fleet_budget_block_writes_total", "counter",
                  "Fleet-wide upstream pauses written to Redis.");
    append_sample(out, "imagegate_fleet_budget_block_writes_total", "", "",
                  s.block_writes.load(relaxed), "result=\"ok\"");
    append_sample(out, "imagegate_fleet_budget_block_writes_total", "", "",
                  s.block_write_failures.load(relaxed), "result=\"failed\"");
    append_header(out, "imagegate_fleet_budget_give_backs_total", "counter",
                  "Unspent fleet slots given back: to the bucket, left vacant, lost, failed.");
    const std::pair<const char*, const fleet_budget_stats::counter*> fates[] = {
        {"result=\"given_back\"", &s.given_back},
        {"result=\"vacant\"", &s.vacated},
        {"result=\"lost\"", &s.lost},
        {"result=\"failed\"", &s.give_back_failures}};
    for (const auto& [label, c] : fates) {
        append_sample(out, "imagegate_fleet_budget_give_backs_total", "", "", c->load(relaxed),
                      label);
    }
}

}  // namespace imagegate::fleet
