// The fleet gate's decisions: the reservation path (pause, Redis or the local fallback,
// the script's answer validated), observe() and the factory.
#include "gateway/fleet/budget_core.hpp"

#include <algorithm>

namespace imagegate::fleet {

namespace {

std::int64_t to_us(std::chrono::nanoseconds d) {
    return std::chrono::duration_cast<micros>(d).count();
}

}  // namespace

script_budget detail::script_budget_of(const shield::budget_options& o) {
    const shield::budget check(o);  // validates like the local budget (throws)
    const std::int64_t window_us = std::chrono::duration_cast<micros>(o.window).count();
    const auto budget = static_cast<std::int64_t>(o.budget);
    return {.interval_us = window_us / budget + (window_us % budget != 0 ? 1 : 0),
            .burst = static_cast<std::int64_t>(o.burst),
            .reserve = static_cast<std::int64_t>(check.reserve()),
            .hold_horizon_us = to_us(o.hold_horizon),
            .hold_grace_us = to_us(o.hold_grace),
            .max_holds = static_cast<std::int64_t>(o.max_holds)};
}

shield::budget_options detail::unproven_options(const fleet_gate_options& o) {
    const auto local = fallback_options(o);
    auto b = local.budget;
    b.budget = local.unproven_budget;
    b.burst = std::min(b.burst, b.budget);
    b.background_reserve_percent = 20;
    b.max_holds = 0;
    return b;
}

namespace {

using detail::core_ptr;

/// Ends this call's probe of a Redis that failed (if it is the probe).
struct probe_guard {
    explicit probe_guard(std::atomic<bool>* p) : probing(p) {}
    probe_guard(const probe_guard&) = delete;
    probe_guard& operator=(const probe_guard&) = delete;
    ~probe_guard() {
        if (probing != nullptr) {
            probing->store(false);
        }
    }
    std::atomic<bool>* const probing;
};

asio::awaitable<ticket> reserve_in(core_ptr k, admission::call c) {
    const auto now = clock::now();
    std::string quota = k->quota_of(c.credential);
    redis::client& cl = k->client_for();
    if (const auto paused = k->pauses.blocked_for(quota, now)) {
        // No reservation reaches Redis while paused: a pause it has not confirmed yet is
        // written from here, at most once per retry_interval.
        if (k->push_pending.load() && cl.is_up() &&
            now.time_since_epoch().count() >= k->retry_at.load()) {
            k->retry_at.store((now + k->options.retry_interval).time_since_epoch().count());
            k->push_unconfirmed(cl, now);
        }
        co_return k->refuse(refusal::paused, *paused, false);
    }
    bool probe = false;
    if (!cl.is_up()) {
        k->failed(now, k->stats.fallback_down, "not connected");
        co_return k->local(c);
    }
    if (!k->may_use_redis(now, probe)) {
        k->stats.fallback_down.fetch_add(1, std::memory_order_relaxed);
        co_return k->local(c);
    }
    // Whatever ends this call (an answer, an error, a refusal before Redis, an exception), the
    // next call after retry_interval may probe again.
    const probe_guard guard(probe ? &k->probing : nullptr);
    const bool background = c.prio == shield::priority::background;
    shield::reservation unproven{};
    if (k->unproven && c.credential != nullptr && !c.proven) {
        unproven = k->unproven->reserve({.now = now, .prio = c.prio, .max_wait = {}, .key = 0});
        if (!unproven.granted) {
            co_return k->refuse(background ? refusal::reserve : refusal::unproven,
                                unproven.slot - now, false);
        }
    }
    reserve_request req{.background = background,
                        .max_wait = std::chrono::duration_cast<micros>(c.max_wait),
                        .hold_key = background ? std::string() : hold_key(c.key),
                        .debt = 0};
    const auto sizes = k->budget.load();
    if (!k->options.gate.passthrough) {
        req.debt = std::min(k->debt.exchange(0), sizes->burst);
    }
    const auto keys = keys_for(k->options.prefix, quota);
    std::vector<std::string> kv{keys.budget, keys.holds, keys.vacant, keys.block, keys.interval};
    auto r = co_await cl.eval_script(reserve_script(), std::move(kv), reserve_args(*sizes, req),
                                     now + k->options.op_timeout);
    const auto at = clock::now();
    if (r) {
        k->stats.script_latency.observe(at - now);
    }
    boost::system::result<reserve_reply, reply_error> d = reply_error::wrong_shape;
    if (r) {
        d = decode_reserve(*r, req);
    }
    if (!d) {
        k->debt.fetch_add(req.debt);  // charged again later: at worst twice, never not at all
        if (unproven.granted) {
            k->unproven->release(unproven, at);
        }
        if (!r) {
            const bool timeout =
                r.error() == redis::error::timeout || r.error() == redis::error::pipeline_stalled;
            k->failed(at, timeout ? k->stats.fallback_timeout : k->stats.fallback_error,
                      timeout ? "timeout" : "client error");
        } else {
            if (k->log) {
                k->log->warn("fleet budget: invalid reply of the reservation script ({}): {}",
                             to_string(d.error()), redis::printable(r->is_error() ? r->text : ""));
            }
            k->failed(at, k->stats.fallback_invalid, "invalid reply");
        }
        co_return k->local(c);
    }
    k->succeeded();
    k->push_unconfirmed(cl, at);
    detail::grant_record g{.cl = &cl,
                           .quota = std::move(quota),
                           .interval_us = sizes->interval_us,
                           .burst = sizes->burst};
    co_return detail::decided(k, *d, at, std::move(g), unproven);
}

}  // namespace

fleet_gate::fleet_gate(fleet_gate_options o,
                       std::function<redis::client&()> client_for_current_worker,
                       std::shared_ptr<spdlog::logger> log)
    : core_(std::make_shared<core>(std::move(o), std::move(client_for_current_worker),
                                   std::move(log))) {}

fleet_gate::~fleet_gate() = default;

asio::awaitable<ticket> fleet_gate::reserve(admission::call c) { return reserve_in(core_, c); }

std::optional<clock::duration> fleet_gate::observe(const credential_digest* credential,
                                                   const admission::upstream_signals& s) {
    auto& k = *core_;
    const auto now = clock::now();
    // The local gate parses the signals (and remembers the quota a policy announced); its own
    // pause also guards the fallback path.
    auto pause = k.fallback.observe(credential, s);
    if (!pause && k.options.gate.passthrough && credential != nullptr && !s.ratelimit.empty()) {
        // A credential the fallback never saw (its calls went through Redis).
        shield::upstream_limit fresh(k.options.gate.limit);
        fresh.observe_ratelimit(now, s.ratelimit, s.ratelimit_policy);
        pause = fresh.blocked_for(now);
    }
    const std::string quota = k.quota_of(credential);
    if (!pause) {
        return k.pauses.blocked_for(quota, now);
    }
    const auto until = now + *pause;
    // Local first: this instance calls no more while the fleet-wide write is in flight.
    if (k.pauses.extend(quota, now, until, false)) {
        k.write_pause(k.client_for(), quota, until);
    }
    return k.pauses.blocked_for(quota, now);
}

void fleet_gate::resize(const admission::budget_sizes& sizes) {
    auto& k = *core_;
    const std::lock_guard lock(k.resize_mu);
    fleet_gate_options next = k.options;
    next.gate = k.gate_in_effect;
    next.gate.budget.budget = sizes.budget;
    next.gate.budget.window = sizes.window;
    next.gate.budget.burst = sizes.burst;
    next.gate.unproven_budget = sizes.unproven_budget;
    // Everything is checked before anything changes.
    auto script = std::make_shared<const script_budget>(detail::script_budget_of(next.gate.budget));
    const auto local = fallback_options(next);
    std::optional<shield::budget_options> unproven;
    if (k.unproven) {
        unproven = detail::unproven_options(next);
        const shield::budget check(*unproven);
    }
    // The local 1/N share first (it takes its own checks), then the script's arguments: the
    // Redis schedule converts itself on its next reservation (budget_script.hpp).
    k.fallback.resize({.budget = local.budget.budget,
                       .window = local.budget.window,
                       .burst = local.budget.burst,
                       .unproven_budget = local.unproven_budget});
    if (unproven) {
        k.unproven->resize(*unproven, clock::now());
    }
    k.budget.store(std::move(script));
    k.gate_in_effect = next.gate;
}

void fleet_gate::render_metrics(std::string& out) const {
    render_fleet_budget_stats(out, core_->stats);
    core_->fallback.render_metrics(out);
}

const fleet_budget_stats& fleet_gate::stats() const noexcept { return core_->stats; }

const admission::local_gate& fleet_gate::fallback() const noexcept { return core_->fallback; }

std::shared_ptr<admission::gate> make_fleet_gate(
    fleet_gate_options o, std::function<redis::client&()> client_for_current_worker,
    std::shared_ptr<spdlog::logger> log) {
    return std::make_shared<fleet_gate>(std::move(o), std::move(client_for_current_worker),
                                        std::move(log));
}

}  // namespace imagegate::fleet
