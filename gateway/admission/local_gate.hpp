// The gate of one process: the budgets and upstream pauses in memory (token mode: the gateway's
// one credential; passthrough: one shield per caller credential plus the shared budget of
// unproven credentials), with queued calls woken by one timer each.
#pragma once

#include "gateway/admission/gate.hpp"
#include "gateway/shield/credential_shields.hpp"

#include <memory>

namespace imagegate::admission {

struct local_gate_options {
    /// The gateway token's budget, or each caller credential's in passthrough.
    shield::budget_options budget;
    shield::upstream_limit_options limit;
    /// auth.mode = "passthrough": a shield per caller credential.
    bool passthrough = false;
    /// Passthrough: calls per budget window with credentials holding no proof, all together.
    std::uint64_t unproven_budget = 600;
    /// Passthrough: caller credentials with a shield at once (shield.max_credentials).
    std::size_t max_credentials = 4096;
    /// The clock every decision reads (tests move it by hand). Outlives the gate.
    const time_source* time = &time_source::real();
};

/// Owned by the composition root through `gate`. Thread-safety: every member may be called
/// concurrently; a ticket may outlive the gate (it shares the state it needs).
class local_gate final : public gate {
public:
    /// Throws std::invalid_argument for unusable budget options (as shield::budget).
    explicit local_gate(const local_gate_options& o);
    ~local_gate() override;
    local_gate(const local_gate&) = delete;
    local_gate& operator=(const local_gate&) = delete;

    asio::awaitable<ticket> reserve(call c) override;
    /// What reserve() decides, synchronously at `now` (tests drive time by hand).
    ticket decide(const call& c, clock::time_point now);

    std::optional<clock::duration> observe(const credential_digest* credential,
                                           const upstream_signals& s) override;
    void resize(const budget_sizes& sizes) override;
    /// `true`: empties the token's bucket at `now` and, in passthrough, each credential's,
    /// and credentials first seen from now on start empty too; `false`: they start full
    /// again. (The shared budget of unproven credentials is this instance's own in any case.) The
    /// fleet budget's local fallback takes over this way from a fleet budget that may have granted
    /// its burst just before: N full local buckets would add N · burst/N on top.
    void start_empty(bool on, clock::time_point now);
    void render_metrics(std::string& out) const override;

    const gate_stats& stats() const noexcept;

    struct core;

private:
    std::shared_ptr<core> core_;
};

}  // namespace imagegate::admission
