#include "gateway/fleet/budget_gate.hpp"

#include "gateway/fleet/budget_pauses.hpp"
#include "gateway/fleet/budget_script.hpp"

#include <boost/asio/co_spawn.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <exception>

namespace imagegate::fleet {

using admission::clock;
using admission::refusal;
using admission::ticket;

namespace {

std::int64_t to_us(std::chrono::nanoseconds d) {
    return std::chrono::duration_cast<micros>(d).count();
}

script_budget script_budget_of(const shield::budget_options& o) {
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
shield::budget_options unproven_options(const fleet_gate_options& o) {
    const auto local = fallback_options(o);
    auto b = local.budget;
    b.budget = local.unproven_budget;
    b.burst = std::min(b.burst, b.budget);
    b.background_reserve_percent = 20;
    b.max_holds = 0;
    return b;
}

}  // namespace

struct fleet_gate::core : std::enable_shared_from_this<fleet_gate::core> {
    core(fleet_gate_options o, std::function<redis::client&()> c, std::shared_ptr<spdlog::logger> l)
        : options(std::move(o)),
          budget(script_budget_of(options.gate.budget)),
          client_for(std::move(c)),
          log(std::move(l)),
          fallback(fallback_options(options)),
          // The unproven budget stays per instance (1/N): made-up credentials are refused
          // before they cost a Redis round trip or a key.
          unproven(options.gate.passthrough
                       ? std::make_unique<shield::budget>(unproven_options(options))
                       : nullptr),
          pauses(options.gate.passthrough ? options.gate.max_credentials : 1) {}

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

    void failed(clock::time_point now, fleet_stats::counter& reason, std::string_view why) {
        reason.fetch_add(1, std::memory_order_relaxed);
        retry_at.store((now + options.retry_interval).time_since_epoch().count());
        if (!stats.on_fallback.exchange(true)) {
            if (log) {
                log->warn(
                    "fleet budget: Redis not usable ({}); deciding locally with 1/{} of "
                    "the fleet budget",
                    why, options.instances);
            }
            if (used_redis.load() && !options.gate.passthrough) {
                drain_fallback(now);
            }
        }
    }

    /// The switch to the local budget starts it empty: Redis may have granted the fleet's
    /// burst just before, and the N local buckets must not add N · burst/N on top.
    void drain_fallback(clock::time_point now) {
        for (std::uint64_t i = 0; i <= fallback_options(options).budget.burst; ++i) {
            auto t = fallback.decide({.key = {}, .max_wait = {}}, now);
            if (!t.granted()) {
                break;
            }
            t.commit();
        }
    }

    void succeeded() {
        used_redis.store(true);
        if (stats.on_fallback.exchange(false) && log) {
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

    const fleet_gate_options options;
    const script_budget budget;
    const std::function<redis::client&()> client_for;
    const std::shared_ptr<spdlog::logger> log;
    admission::local_gate fallback;
    std::unique_ptr<shield::budget> unproven;
    fleet_stats stats;
    pause_table pauses;
    std::atomic<clock::rep> retry_at{0};
    std::atomic<bool> probing{false};
    std::atomic<bool> used_redis{false};
    std::atomic<bool> push_pending{false};
    /// Token mode: local grants not yet charged to the fleet budget.
    std::atomic<std::int64_t> debt{0};
};

namespace {

using core_ptr = std::shared_ptr<fleet_gate::core>;

asio::awaitable<void> write_pause_in(core_ptr k, redis::client* cl, std::string quota,
                                     clock::time_point until) {
    const auto remaining = until - clock::now();
    if (remaining <= clock::duration::zero()) {
        co_return;
    }
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(remaining).count();
    std::vector<std::string> keys{keys_for(k->options.prefix, quota).block};
    std::vector<std::string> args{std::to_string(ms)};
    auto r = co_await cl->eval_script(block_script(), std::move(keys), std::move(args),
                                      clock::now() + k->options.op_timeout);
    const auto left = r ? decode_block(*r, std::chrono::duration_cast<std::chrono::milliseconds>(
                                               k->options.gate.limit.max_pause))
                        : std::nullopt;
    if (left) {
        k->stats.block_writes.fetch_add(1, std::memory_order_relaxed);
        k->pauses.confirm(quota, until);
        // Another instance's pause may run longer: this one honours it from now on too.
        const auto now = clock::now();
        k->pauses.extend(quota, now, now + *left, true);
        co_return;
    }
    k->stats.block_write_failures.fetch_add(1, std::memory_order_relaxed);
    k->pauses.unconfirm(quota, until);
    k->push_pending.store(true);
}

/// What a granted fleet ticket gives back if it is not spent.
struct grant_record {
    redis::client* cl = nullptr;
    std::string quota;
    bool immediate = false;
    std::int64_t slot_us = 0;
    std::int64_t tat_us = 0;
};

asio::awaitable<void> give_back_in(core_ptr k, grant_record g) {
    const auto keys = keys_for(k->options.prefix, g.quota);
    std::vector<std::string> kv{keys.budget, keys.vacant};
    std::vector<std::string> args{std::to_string(k->budget.interval_us),
                                  std::to_string(k->budget.burst), g.immediate ? "1" : "0",
                                  std::to_string(g.slot_us), std::to_string(g.tat_us)};
    auto r = co_await g.cl->eval_script(give_back_script(), std::move(kv), std::move(args),
                                        clock::now() + k->options.op_timeout);
    const auto res = r ? decode_give_back(*r) : give_back_result::failed;
    auto& s = k->stats;
    auto& c = res == give_back_result::given_back ? s.given_back
              : res == give_back_result::vacant   ? s.vacated
              : res == give_back_result::lost     ? s.lost
                                                  : s.give_back_failures;
    c.fetch_add(1, std::memory_order_relaxed);
}

class fleet_ticket final : public admission::detail::ticket_state {
public:
    fleet_ticket(core_ptr k, clock::time_point slot, grant_record g, shield::reservation unproven)
        : ticket_state(slot, k->stats.decisions),
          core_(std::move(k)),
          grant_(std::move(g)),
          unproven_(unproven) {}

    void on_commit() override {}

    void on_release() override {
        if (unproven_.granted) {
            core_->unproven->release(unproven_, clock::now());
        }
        // Best effort: a give-back that fails only leaves a slot unused.
        asio::co_spawn(grant_.cl->get_executor(), give_back_in(core_, std::move(grant_)),
                       log_failure{core_->log});
    }

private:
    const core_ptr core_;
    grant_record grant_;
    const shield::reservation unproven_;
};

ticket decided(const core_ptr& k, const reserve_reply& d, clock::time_point at, grant_record g,
               shield::reservation unproven) {
    auto& s = *k->stats.decisions;
    const auto wait = std::chrono::duration_cast<clock::duration>(d.wait);
    const auto give_back_unproven = [&] {
        if (unproven.granted) {
            k->unproven->release(unproven, at);
        }
    };
    switch (d.what) {
    case outcome::granted_now:
    case outcome::granted_queued:
    case outcome::granted_held: {
        g.immediate = d.what == outcome::granted_now;
        g.slot_us = d.slot_us;
        g.tat_us = d.tat_us;
        auto& counter = d.what == outcome::granted_held  ? s.granted_held
                        : d.what == outcome::granted_now ? s.granted_now
                                                         : s.granted_queued;
        counter.fetch_add(1, std::memory_order_relaxed);
        // The slot on this instance's clock: `at` is after Redis read TIME, so never early.
        auto st = std::make_shared<fleet_ticket>(k, at + wait, std::move(g), unproven);
        return ticket(std::move(st), d.what == outcome::granted_held);
    }
    case outcome::refused: give_back_unproven(); return k->refuse(refusal::queue_full, wait, false);
    case outcome::refused_hold:
        give_back_unproven();
        return k->refuse(refusal::queue_full, wait, true);
    case outcome::refused_held: give_back_unproven(); return k->refuse(refusal::held, wait, true);
    case outcome::paused:
        give_back_unproven();
        k->pauses.extend(g.quota, at, at + wait, true);
        return k->refuse(refusal::paused, wait, false);
    case outcome::reserve: give_back_unproven(); return k->refuse(refusal::reserve, wait, false);
    }
    give_back_unproven();
    return k->refuse(refusal::queue_full, wait, false);
}

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
    if (!k->options.gate.passthrough) {
        req.debt = std::min(k->debt.exchange(0), k->budget.burst);
    }
    const auto keys = keys_for(k->options.prefix, quota);
    std::vector<std::string> kv{keys.budget, keys.holds, keys.vacant, keys.block};
    auto r = co_await cl.eval_script(reserve_script(), std::move(kv), reserve_args(k->budget, req),
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
    grant_record g{.cl = &cl, .quota = std::move(quota)};
    co_return decided(k, *d, at, std::move(g), unproven);
}

}  // namespace

void fleet_gate::core::write_pause(redis::client& cl, std::string quota, clock::time_point until) {
    // Not a member coroutine: the write must not depend on the gate outliving it.
    asio::co_spawn(cl.get_executor(),
                   write_pause_in(shared_from_this(), &cl, std::move(quota), until),
                   log_failure{log});
}

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

void fleet_gate::render_metrics(std::string& out) const {
    render_fleet_stats(out, core_->stats);
    core_->fallback.render_metrics(out);
}

const fleet_stats& fleet_gate::stats() const noexcept { return core_->stats; }

const admission::local_gate& fleet_gate::fallback() const noexcept { return core_->fallback; }

std::shared_ptr<admission::gate> make_fleet_gate(
    fleet_gate_options o, std::function<redis::client&()> client_for_current_worker,
    std::shared_ptr<spdlog::logger> log) {
    return std::make_shared<fleet_gate>(std::move(o), std::move(client_for_current_worker),
                                        std::move(log));
}

}  // namespace imagegate::fleet
