// The fleet-wide gate: the shield's budget and upstream pause kept in Redis for every instance
// at once (one Lua script per decision, Redis TIME as the clock), falling back to a local
// budget of 1/N of the fleet's while Redis is away — never open.
#pragma once

#include "gateway/admission/local_gate.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/redis/client.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace imagegate::fleet {

struct fleet_gate_options {
    /// Key prefix (`[redis] key_prefix`): keys are `<prefix>:budget:{<quota>}` and
    /// `<prefix>:block:{<quota>}`.
    std::string prefix = "imagegate";
    /// The longest a reservation waits for Redis; past it the local fallback decides.
    std::chrono::milliseconds op_timeout{100};
    /// Instances sharing the budget (`fleet.instances`): the fallback gets 1/N of it.
    std::uint32_t instances = 1;
    /// While on the fallback, Redis is tried again (by one call) at most this often.
    std::chrono::milliseconds retry_interval{1000};
    /// The fleet's budget, pause thresholds and passthrough settings: the same fields as one
    /// instance's (shield.*), meaning the whole fleet's totals.
    admission::local_gate_options gate;
};

/// The local fallback's options: budget, burst and the unproven budget divided by
/// `instances` (rounded down, at least 1); the rest unchanged.
admission::local_gate_options fallback_options(const fleet_gate_options& o);

/// Counters of the fleet path (the fallback's are the local gate's own). Relaxed atomics.
struct fleet_budget_stats {
    using counter = std::atomic<std::uint64_t>;
    /// Decisions made by the script, with the admission vocabulary (rendered under
    /// `imagegate_fleet_budget_*`); fleet tickets wait and give back through it.
    std::shared_ptr<admission::gate_stats> decisions = std::make_shared<admission::gate_stats>();
    /// Reservations decided locally because Redis was not usable, by reason.
    counter fallback_down{0};     ///< the client was not connected, or retry_interval not over
    counter fallback_timeout{0};  ///< the script did not answer within op_timeout
    counter fallback_error{0};    ///< another client error (connection lost, too many pending)
    counter fallback_invalid{0};  ///< a reply that failed validation (decode_reserve)
    counter block_writes{0};      ///< fleet-wide pauses written
    counter block_write_failures{0};
    counter given_back{0};  ///< give-back script: to the bucket
    counter vacated{0};     ///< give-back script: left vacant for the next call
    counter lost{0};        ///< give-back script: in the past or already moved on
    counter give_back_failures{0};
    std::atomic<bool> on_fallback{false};
    metrics::histogram script_latency{redis::latency_bounds};
};

/// Appends the fleet metrics: imagegate_fleet_budget_{reservations,refusals}_total,
/// _queue_depth, _queue_wait_seconds, _released_total, _abandoned_total (as the local gate's,
/// for decisions made in Redis), _fallback_total{reason}, _on_fallback, _script_seconds,
/// _block_writes_total{result}, _give_backs_total{result}.
void render_fleet_budget_stats(std::string& out, const fleet_budget_stats& s);

/// Owned by the composition root through `admission::gate`. Thread-safety: every member may
/// be called concurrently from the workers; reserve() and observe() must run on a worker
/// whose client `client_for_current_worker` returns. Tickets may outlive the gate; the
/// clients must outlive every io_context run (a give-back or pause write runs on them).
class fleet_gate final : public admission::gate {
public:
    /// Throws std::invalid_argument for unusable budget options or zero instances.
    fleet_gate(fleet_gate_options o, std::function<redis::client&()> client_for_current_worker,
               std::shared_ptr<spdlog::logger> log);
    ~fleet_gate() override;
    fleet_gate(const fleet_gate&) = delete;
    fleet_gate& operator=(const fleet_gate&) = delete;

    asio::awaitable<admission::ticket> reserve(admission::call c) override;
    std::optional<admission::clock::duration> observe(
        const credential_digest* credential, const admission::upstream_signals& s) override;
    /// New fleet totals: the scripts' arguments from the next reservation on, the local
    /// fallback's 1/N share and the per-instance unproven budget at once.
    void resize(const admission::budget_sizes& sizes) override;
    /// The fleet metrics, then the local fallback gate's own (imagegate_budget_*,
    /// imagegate_upstream_*): those count only what was decided locally.
    void render_metrics(std::string& out) const override;

    const fleet_budget_stats& stats() const noexcept;
    const admission::local_gate& fallback() const noexcept;

    struct core;

private:
    std::shared_ptr<core> core_;
};

/// The factory the composition root calls (make_gate() with `[redis]` configured).
std::shared_ptr<admission::gate> make_fleet_gate(
    fleet_gate_options o, std::function<redis::client&()> client_for_current_worker,
    std::shared_ptr<spdlog::logger> log);

}  // namespace imagegate::fleet
