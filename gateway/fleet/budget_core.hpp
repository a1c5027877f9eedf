// The fleet gate's shared state (private to gateway/fleet/budget_*.cpp): options, the local
// fallback, the pause table, Redis health, and what a granted fleet ticket gives back.
#pragma once

#include "gateway/fleet/budget_gate.hpp"
#include "gateway/fleet/budget_pauses.hpp"
#include "gateway/fleet/budget_script.hpp"
#include "gateway/core/snapshot.hpp"

#include <spdlog/logger.h>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

namespace imagegate::fleet {

using admission::clock;
using admission::refusal;
using admission::ticket;

namespace detail {

/// Logs an exception that ended a fire-and-forget write (never expected).
struct log_failure {
    std::shared_ptr<spdlog::logger> log;
    void operator()(const std::exception_ptr& e) const {
        if (!e || !log) {
            return;
        }
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            log->error("fleet budget: background Redis write failed: {}", x.what());
        }
    }
};

/// Passthrough: the budget of unproven credentials, 1/N per instance, never holding slots.
shield::budget_options unproven_options(const fleet_gate_options& o);

/// The budget in the scripts' units; validates like shield::budget (throws).
script_budget script_budget_of(const shield::budget_options& o);

/// What a granted fleet ticket gives back if it is not spent.
struct grant_record {
    redis::client* cl = nullptr;
    std::string quota;
    /// The sizes the slot was granted under: a give-back after a resize is lost, not undone
    /// in the wrong unit.
    std::int64_t interval_us = 0;
    std::int64_t burst = 0;
    bool immediate = false;
    std::int64_t slot_us = 0;
    std::int64_t tat_us = 0;
};

}  // namespace detail

/// Owned (shared) by the fleet gate, its tickets and its background writes.
/// Thread-safety: the members are thread-safe types or constant; see fleet_gate.
struct fleet_gate::core : std::enable_shared_from_this<fleet_gate::core> {
    core(fleet_gate_options o, std::function<redis::client&()> c, std::shared_ptr<spdlog::logger> l)
        : options(std::move(o)),
          budget(
              std::make_shared<const script_budget>(detail::script_budget_of(options.gate.budget))),
          client_for(std::move(c)),
          log(std::move(l)),
          fallback(fallback_options(options)),
          // The unproven budget stays per instance (1/N): made-up credentials are refused
          // before they cost a Redis round trip or a key.
          unproven(options.gate.passthrough
                       ? std::make_unique<shield::budget>(detail::unproven_options(options))
                       : nullptr),
          pauses(options.gate.passthrough ? options.gate.max_credentials : 1),
          gate_in_effect(options.gate) {}

    std::string quota_of(const credential_digest* cred) const {
        return options.gate.passthrough && cred != nullptr ? hex(cred->data(), cred->size())
                                                           : std::string("token");
    }

    ticket refuse(refusal why, clock::duration wait, bool held) {
        stats.decisions->count(why);
        return ticket(why, wait, held);
    }

    /// Whether this call may ask Redis; `probe` set when it is the one retrying after errors.
    bool may_use_redis(clock::time_point now, bool& probe) {
        if (!stats.on_fallback.load()) {
            return true;
        }
        if (now.time_since_epoch().count() < retry_at.load()) {
            return false;
        }
        probe = !probing.exchange(true);
        return probe;
    }

    void failed(clock::time_point now, fleet_budget_stats::counter& reason, std::string_view why) {
        reason.fetch_add(1, std::memory_order_relaxed);
        retry_at.store((now + options.retry_interval).time_since_epoch().count());
        if (stats.on_fallback.load()) {
            return;
        }
        const std::lock_guard lock(switch_mu);
        if (stats.on_fallback.load()) {
            return;
        }
        // The local budget starts empty — the token's bucket, or in passthrough every
        // credential's, those first seen during the outage included: Redis may have granted
        // the fleet's burst just before, and the N local buckets must not add N · burst/N on
        // top. Emptied before the switch is visible, so no call decides on a full bucket.
        if (used_redis.load()) {
            fallback.start_empty(true, now);
        }
        stats.on_fallback.store(true);
        if (log) {
            log->warn(
                "fleet budget: Redis not usable ({}); deciding locally with 1/{} of the "
                "fleet budget",
                why, options.instances);
        }
    }

    void succeeded() {
        used_redis.store(true);
        if (!stats.on_fallback.load()) {
            return;
        }
        const std::lock_guard lock(switch_mu);
        if (!stats.on_fallback.exchange(false)) {
            return;
        }
        fallback.start_empty(false, clock::now());  // credentials new to it start full again
        if (log) {
            log->info("fleet budget: Redis usable again; the fleet budget decides");
        }
    }

    ticket local(const admission::call& c) {
        auto t = fallback.decide(c, clock::now());
        if (t.granted() && !options.gate.passthrough) {
            debt.fetch_add(1, std::memory_order_relaxed);
        }
        return t;
    }

    void write_pause(redis::client& cl, std::string quota, clock::time_point until);
    void push_unconfirmed(redis::client& cl, clock::time_point now) {
        if (push_pending.exchange(false)) {
            for (auto& p : pauses.take_unconfirmed(now)) {
                write_pause(cl, std::move(p.quota), p.until);
            }
        }
    }

    const fleet_gate_options options;  // `gate` as at start-up; gate_in_effect after resizes
    /// The fleet's sizes in the scripts' units, replaced whole by resize().
    snapshot<script_budget> budget;
    const std::function<redis::client&()> client_for;
    const std::shared_ptr<spdlog::logger> log;
    admission::local_gate fallback;
    std::unique_ptr<shield::budget> unproven;
    fleet_budget_stats stats;
    pause_table pauses;
    std::atomic<clock::rep> retry_at{0};
    std::atomic<bool> probing{false};
    std::atomic<bool> used_redis{false};
    std::atomic<bool> push_pending{false};
    /// Token mode: local grants not yet charged to the fleet budget.
    std::atomic<std::int64_t> debt{0};
    std::mutex resize_mu;                          // one resize at a time
    admission::local_gate_options gate_in_effect;  // guarded by resize_mu
    std::mutex switch_mu;                          // one switch to or from the fallback at a time
};

namespace detail {

using core_ptr = std::shared_ptr<fleet_gate::core>;

/// The ticket for a validated reply `d` received at `at` (grants keep `g` and `unproven`
/// for give-back; refusals give `unproven` back at once).
ticket decided(const core_ptr& k, const reserve_reply& d, clock::time_point at, grant_record g,
               shield::reservation unproven);

}  // namespace detail

}  // namespace imagegate::fleet
