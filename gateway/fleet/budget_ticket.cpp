// Fleet tickets: the decision a validated script reply becomes, the give-back of an unspent
// grant and the fleet-wide pause write (fire-and-forget coroutines on the worker's client).
#include "gateway/fleet/budget_core.hpp"

#include <boost/asio/co_spawn.hpp>

namespace imagegate::fleet {
namespace detail {

namespace {

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

asio::awaitable<void> give_back_in(core_ptr k, grant_record g) {
    const auto keys = keys_for(k->options.prefix, g.quota);
    std::vector<std::string> kv{keys.budget, keys.vacant, keys.interval};
    std::vector<std::string> args{std::to_string(g.interval_us), std::to_string(g.burst),
                                  g.immediate ? "1" : "0", std::to_string(g.slot_us),
                                  std::to_string(g.tat_us)};
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

}  // namespace

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

}  // namespace detail

void fleet_gate::core::write_pause(redis::client& cl, std::string quota, clock::time_point until) {
    // Not a member coroutine: the write must not depend on the gate outliving it.
    asio::co_spawn(cl.get_executor(),
                   detail::write_pause_in(shared_from_this(), &cl, std::move(quota), until),
                   detail::log_failure{log});
}

}  // namespace imagegate::fleet
