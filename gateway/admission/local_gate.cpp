#include "gateway/admission/local_gate.hpp"

#include "gateway/metrics/registry.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <unordered_map>

namespace imagegate::admission {

namespace {

/// One budget's share of a ticket (passthrough may charge two: the unproven and the own).
struct part {
    std::shared_ptr<const void> owner;  // keeps the budget alive while the ticket lives
    shield::budget* budget = nullptr;
    shield::reservation r;
};

/// The budget's key for holds: a hash of the cache key's bytes, never 0 (0 means none).
/// A collision lets another key claim a held slot: order changes, the budget does not.
std::uint64_t key_hash(std::string_view key) {
    if (key.empty()) {
        return 0;
    }
    const std::uint64_t h = std::hash<std::string_view>{}(key);
    return h == 0 ? 1 : h;
}

struct slot_key {
    const shield::budget* budget;
    std::uint64_t id;
    friend bool operator==(const slot_key&, const slot_key&) = default;
};

struct slot_key_hash {
    std::size_t operator()(const slot_key& k) const noexcept {
        return std::hash<const void*>{}(k.budget) ^ (k.id * 0x9e3779b97f4a7c15ULL);
    }
};

class local_ticket;

}  // namespace

struct local_gate::core {
    explicit core(const local_gate_options& o)
        : options(o),
          token(std::make_shared<shield::credential_shield>(o.budget, o.limit)),
          shields(o.passthrough ? std::make_unique<shield::credential_shields>(
                                      shield::credential_shields_options{
                                          .budget = budget_per_credential(o.budget),
                                          .limit = o.limit,
                                          .max_credentials = o.max_credentials,
                                          .unproven_share_percent = 75})
                                : nullptr),
          unproven(o.passthrough ? std::make_shared<shield::budget>(
                                       unproven_options(o.budget, o.unproven_budget))
                                 : nullptr),
          sizes(o.budget) {}

    static shield::budget_options unproven_options(const shield::budget_options& b,
                                                   std::uint64_t unproven_budget) {
        return {.budget = unproven_budget,
                .window = b.window,
                .burst = std::min(b.burst, unproven_budget),
                .background_reserve_percent = 20,
                // Made-up credentials never come back for a slot.
                .max_holds = 0};
    }

    /// Holds per credential stay few: a caller's refused keys, not a fleet's.
    static shield::budget_options budget_per_credential(shield::budget_options b) {
        b.max_holds = std::min<std::size_t>(b.max_holds, 64);
        return b;
    }

    void track(const part& p, const std::shared_ptr<local_ticket>& t);
    void untrack(const part& p);
    /// Applies a release's hand-on: the ticket owning (`b`, `id`) now goes at `to`.
    void moved(const shield::budget* b, std::uint64_t id, clock::time_point to);
    /// Gives `p` back (a refusal of the other part, or a released ticket).
    void give_back(const part& p, clock::time_point now) {
        const auto res = p.budget->release(p.r, now);
        if (res.moved_id != 0) {
            moved(p.budget, res.moved_id, res.moved_to);
        }
    }

    const local_gate_options options;
    const std::shared_ptr<shield::credential_shield> token;
    const std::unique_ptr<shield::credential_shields> shields;
    const std::shared_ptr<shield::budget> unproven;
    const std::shared_ptr<gate_stats> stats = std::make_shared<gate_stats>();

    std::mutex resize_mu;          // one resize at a time
    shield::budget_options sizes;  // the token budget's options in effect; guarded by resize_mu

    std::mutex mu;
    /// Tickets queued on a tracked slot, so a slot handed on reaches its new owner's timer.
    std::unordered_map<slot_key, std::weak_ptr<local_ticket>, slot_key_hash> waiting;  // mu
};

namespace {

class local_ticket final : public detail::ticket_state {
public:
    local_ticket(std::shared_ptr<local_gate::core> c, const std::array<part, 2>& parts,
                 std::size_t n, clock::time_point slot)
        : ticket_state(slot, c->stats, *c->options.time),
          core_(std::move(c)),
          parts_(parts),
          n_(n) {}

    void on_commit() override {
        for (std::size_t i = 0; i < n_; ++i) {
            parts_[i].budget->commit(parts_[i].r);
            core_->untrack(parts_[i]);
        }
    }

    void on_release() override {
        const auto now = core_->options.time->now();
        for (std::size_t i = 0; i < n_; ++i) {
            core_->untrack(parts_[i]);
            core_->give_back(parts_[i], now);
        }
    }

    /// A part's slot moved earlier; the ticket goes when its latest part may.
    void part_moved(const shield::budget* b, clock::time_point to) {
        clock::time_point latest{};
        {
            const std::lock_guard lock(mu_);
            for (std::size_t i = 0; i < n_; ++i) {
                if (parts_[i].budget == b) {
                    parts_[i].r.slot = to;
                }
                latest = std::max(latest, parts_[i].r.slot);
            }
        }
        move_to(latest);
    }

private:
    const std::shared_ptr<local_gate::core> core_;
    std::mutex mu_;
    std::array<part, 2> parts_;  // slots guarded by mu_; budgets and ids are constant
    const std::size_t n_;
};

}  // namespace

void local_gate::core::track(const part& p, const std::shared_ptr<local_ticket>& t) {
    if (p.r.id == 0) {
        return;
    }
    const std::lock_guard lock(mu);
    waiting[slot_key{p.budget, p.r.id}] = t;
}

void local_gate::core::untrack(const part& p) {
    if (p.r.id == 0) {
        return;
    }
    const std::lock_guard lock(mu);
    waiting.erase(slot_key{p.budget, p.r.id});
}

void local_gate::core::moved(const shield::budget* b, std::uint64_t id, clock::time_point to) {
    std::shared_ptr<local_ticket> t;
    {
        const std::lock_guard lock(mu);
        if (const auto it = waiting.find(slot_key{b, id}); it != waiting.end()) {
            t = it->second.lock();
        }
    }
    if (t) {
        t->part_moved(b, to);
    }
}

local_gate::local_gate(const local_gate_options& o) : core_(std::make_shared<core>(o)) {}

local_gate::~local_gate() = default;

const gate_stats& local_gate::stats() const noexcept { return *core_->stats; }

asio::awaitable<ticket> local_gate::reserve(call c) {
    co_return decide(c, core_->options.time->now());
}

ticket local_gate::decide(const call& c, clock::time_point now) {
    auto& k = *core_;
    const bool foreground = c.prio == shield::priority::foreground;
    const auto refuse = [&](refusal why, clock::duration wait, bool held) {
        k.stats->count(why);
        return ticket(why, wait, held);
    };
    std::array<part, 2> parts{};
    std::size_t n = 0;
    std::shared_ptr<shield::credential_shield> sh = k.token;
    if (k.options.passthrough && c.credential != nullptr) {
        const credential_digest& cred = *c.credential;
        if (const auto known = k.shields->find(cred, now)) {
            if (const auto blocked = known->limit.blocked_for(now)) {
                return refuse(refusal::paused, *blocked, false);
            }
        }
        if (!c.proven) {
            const auto r =
                k.unproven->reserve({.now = now, .prio = c.prio, .max_wait = c.max_wait, .key = 0});
            if (!r.granted) {
                return refuse(foreground ? refusal::unproven : refusal::reserve, r.slot - now,
                              false);
            }
            parts[n++] = part{k.unproven, k.unproven.get(), r};
        }
        auto found = k.shields->get(cred, now, c.proven);
        if (!found.shield) {
            for (std::size_t i = 0; i < n; ++i) {
                k.give_back(parts[i], now);
            }
            return refuse(refusal::credentials_full, found.retry_at - now, false);
        }
        sh = std::move(found.shield);
    } else if (const auto blocked = sh->limit.blocked_for(now)) {
        return refuse(refusal::paused, *blocked, false);
    }
    const auto r = sh->budget.reserve({.now = now,
                                       .prio = c.prio,
                                       .max_wait = c.max_wait,
                                       .key = foreground ? key_hash(c.key) : 0});
    if (!r.granted) {
        for (std::size_t i = 0; i < n; ++i) {
            k.give_back(parts[i], now);
        }
        // A hold made now is a queue_full refusal that keeps the slot; an existing hold
        // not yet due is the client coming back early.
        const refusal why = !foreground           ? refusal::reserve
                            : r.held && r.id == 0 ? refusal::held
                                                  : refusal::queue_full;
        return refuse(why, r.slot - now, r.held);
    }
    parts[n++] = part{sh, &sh->budget, r};
    clock::time_point slot = r.slot;
    for (std::size_t i = 0; i < n; ++i) {
        slot = std::max(slot, parts[i].r.slot);
    }
    auto st = std::make_shared<local_ticket>(core_, parts, n, slot);
    for (std::size_t i = 0; i < n; ++i) {
        k.track(parts[i], st);
    }
    auto& counter = r.held       ? k.stats->granted_held
                    : slot > now ? k.stats->granted_queued
                                 : k.stats->granted_now;
    counter.fetch_add(1, std::memory_order_relaxed);
    return ticket(std::move(st), r.held);
}

std::optional<clock::duration> local_gate::observe(const credential_digest* credential,
                                                   const upstream_signals& s) {
    auto& k = *core_;
    const auto now = k.options.time->now();
    std::shared_ptr<shield::credential_shield> sh = k.token;
    if (k.options.passthrough && credential != nullptr) {
        sh = k.shields->find(*credential, now);
        if (!sh && s.status == 429) {
            // The caller's ticket keeps its shield in the table; only a caller that went
            // upstream without one (never) would get here.
            sh = k.shields->get(*credential, now, true).shield;
        }
        if (!sh) {
            return std::nullopt;
        }
    }
    sh->limit.observe_ratelimit(now, s.ratelimit, s.ratelimit_policy);
    if (s.status == 429) {
        sh->limit.pause_until(now, shield::parse_retry_after(s.retry_after));
    }
    return sh->limit.blocked_for(now);
}

void local_gate::resize(const budget_sizes& sizes) {
    auto& k = *core_;
    const std::lock_guard lock(k.resize_mu);
    auto b = k.sizes;
    b.budget = sizes.budget;
    b.window = sizes.window;
    b.burst = sizes.burst;
    const auto unproven = core::unproven_options(b, sizes.unproven_budget);
    // Every budget checks its sizes before any changes: a resize applies whole or not at all.
    const shield::budget check_token(b);
    if (k.unproven) {
        const shield::budget check_unproven(unproven);
    }
    const auto now = k.options.time->now();
    k.token->budget.resize(b, now);
    if (k.shields) {
        k.shields->resize(core::budget_per_credential(b), now);
    }
    if (k.unproven) {
        k.unproven->resize(unproven, now);
    }
    k.sizes = b;
}

void local_gate::start_empty(bool on, clock::time_point now) {
    auto& k = *core_;
    if (on) {
        k.token->budget.drain(now);
    }
    if (k.shields) {
        k.shields->start_empty(on, now);
    }
}

void local_gate::render_metrics(std::string& out) const {
    using metrics::append_sample;
    const auto& k = *core_;
    render_stats(out, *k.stats);
    const auto now = k.options.time->now();
    if (!k.options.passthrough) {
        const auto tokens = k.token->budget.tokens(now);
        append_sample(out, "imagegate_budget_tokens", "gauge",
                      "Upstream calls that may go out right now (token bucket level).",
                      static_cast<std::uint64_t>(tokens < 0 ? 0 : tokens));
        append_sample(out, "imagegate_budget_held_slots", "gauge",
                      "Slots held for refused requests until they come back (Retry-After).",
                      k.token->budget.holds());
        const auto c = k.token->budget.counters();
        metrics::append_header(out, "imagegate_budget_slots_total", "counter",
                               "What became of slots not spent by their first owner.");
        append_sample(out, "imagegate_budget_slots_total", "", "", c.given_back,
                      "fate=\"given_back\"");
        append_sample(out, "imagegate_budget_slots_total", "", "", c.handed_on,
                      "fate=\"handed_on\"");
        append_sample(out, "imagegate_budget_slots_total", "", "", c.wasted, "fate=\"lost\"");
        append_sample(out, "imagegate_budget_slots_total", "", "", c.holds_expired,
                      "fate=\"hold_expired\"");
    }
    const auto lim =
        k.options.passthrough ? k.shields->limit_counters() : k.token->limit.counters();
    append_sample(out, "imagegate_upstream_429_total", "counter",
                  "Upstream 429 answers (each pauses upstream calls).", lim.upstream_429s);
    append_sample(out, "imagegate_upstream_paused_seconds_total", "counter",
                  "Seconds upstream calls were paused (429 Retry-After or a low Ratelimit).",
                  static_cast<std::uint64_t>(lim.seconds_paused));
    if (!k.options.passthrough) {
        append_sample(out, "imagegate_upstream_paused", "gauge",
                      "1 while upstream calls are paused.", k.token->limit.is_paused(now) ? 1 : 0);
        return;
    }
    // Passthrough: per-credential state, reported in aggregate only (no credential, digest or
    // prefix of one in any label).
    append_sample(out, "imagegate_upstream_paused", "gauge",
                  "Caller credentials whose upstream calls are paused.", k.shields->paused(now));
    append_sample(out, "imagegate_passthrough_credentials", "gauge",
                  "Caller credentials with their own budget (passthrough).", k.shields->size());
}

}  // namespace imagegate::admission
