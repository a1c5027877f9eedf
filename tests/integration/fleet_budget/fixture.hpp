// Shared pieces of the fleet budget tests: one "instance" (an io_context, its own Redis client
// and a fleet_gate on it), test budget options, calls, and a flood of distinct keys whose
// granted slots are recorded for the window check.
#pragma once

#include "gateway/fleet/budget_gate.hpp"
#include "tests/integration/redis/fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace imagegate::fleet::test {

using namespace std::chrono_literals;
using redis::test::options_for;
using redis::test::run;
namespace adm = admission;
using clock = std::chrono::steady_clock;

/// 20 calls per 2 s (one per 100 ms), 5 back to back; background leaves 1.
inline fleet_gate_options test_options(std::string prefix, std::uint32_t instances = 1) {
    fleet_gate_options o;
    o.prefix = std::move(prefix);
    // Generous: a loaded test machine (sanitizers) must not fall back by accident; the stall
    // test sets its own.
    o.op_timeout = 500ms;
    o.instances = instances;
    o.retry_interval = 200ms;
    o.gate.budget = {.budget = 20,
                     .window = 2s,
                     .burst = 5,
                     .background_reserve_percent = 20,
                     .max_holds = 64,
                     .hold_horizon = 10s,
                     .hold_grace = 100ms};
    return o;
}

inline constexpr auto interval = 100ms;

inline adm::call fg(std::string_view key, clock::duration max_wait = {}) {
    return {.key = key, .prio = shield::priority::foreground, .max_wait = max_wait};
}

inline adm::call bg(std::string_view key) {
    return {.key = key, .prio = shield::priority::background, .max_wait = {}};
}

/// One gateway instance: its own io_context, Redis client and gate (as in production, where
/// each worker has a client and the instance one gate).
struct instance {
    instance(std::uint16_t port, const fleet_gate_options& o)
        : cl(ioc.get_executor(), client_options(port, o), nullptr),
          gate(
              o, [this]() -> redis::client& { return cl; }, nullptr) {
        cl.start();
    }
    ~instance() {
        cl.stop();
        ioc.restart();
        ioc.poll();
    }
    instance(const instance&) = delete;
    /// The client's own deadline (and stall watchdog) is twice the gate's: the gate's wins.
    static redis::connection_options client_options(std::uint16_t port,
                                                    const fleet_gate_options& o) {
        auto c = options_for(port);
        c.op_timeout = 2 * o.op_timeout;
        return c;
    }
    instance& operator=(const instance&) = delete;

    bool wait_up() { return run(ioc, cl.wait_up(clock::now() + 10s)); }
    adm::ticket reserve(const adm::call& c) { return run(ioc, gate.reserve(c)); }
    /// Reserves and spends at once (a granted ticket left alone would give its slot back).
    bool spend(const adm::call& c) {
        auto t = reserve(c);
        const bool granted = t.granted();
        t.commit();
        return granted;
    }
    /// Lets the client work (replies, reconnects, watchdogs) for `d`.
    void idle(clock::duration d) {
        ioc.restart();
        ioc.run_for(d);
    }
    const fleet_budget_stats& stats() const { return gate.stats(); }
    const adm::local_gate& fallback() const { return gate.fallback(); }
    /// Runs the io_context until `done()` (background writes, give-backs) or 5 s.
    template <class Pred>
    bool settle(Pred done) {
        const auto deadline = clock::now() + 5s;
        ioc.restart();
        while (!done() && clock::now() < deadline) {
            ioc.run_one_for(10ms);
        }
        return done();
    }

    asio::io_context ioc{1};
    redis::client cl;
    fleet_gate gate;
};

/// Granted slots (on the shared steady clock) and refusals of a flood.
struct flood_log {
    std::mutex mu;
    std::vector<clock::time_point> slots;  // guarded by mu
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> returns{0};  ///< came back with the key of a held slot
    std::atomic<std::uint64_t> claims{0};   ///< ... and got it
    std::vector<std::string> failures;      // guarded by mu: exceptions that ended a client
};

/// Ends a flood client: records an exception that ended it (the test then fails).
struct client_done {
    flood_log* log;
    std::atomic<int>* active;
    void operator()(const std::exception_ptr& e) const {
        active->fetch_sub(1);
        if (!e) {
            return;
        }
        std::string what = "unknown exception";
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            what = x.what();
        } catch (...) {
        }
        const std::lock_guard lock(log->mu);
        log->failures.push_back(what);
    }
};

/// One client of the flood: a new key after each call; after a refusal it waits as told and,
/// when its slot was held, comes back with the same key (as the SDKs do with Retry-After).
inline asio::awaitable<void> flood_client(fleet_gate* g, flood_log* log, std::string name,
                                          clock::time_point end) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer backoff(ex);
    std::string key;
    bool returning = false;
    for (int n = 0; clock::now() < end;) {
        if (!returning) {
            key = name + "/" + std::to_string(n++);
        }
        auto t = co_await g->reserve(fg(key, 150ms));
        if (returning) {
            log->returns.fetch_add(1);
        }
        if (t.granted()) {
            log->claims.fetch_add(returning ? 1 : 0);
            returning = false;
            {
                const std::lock_guard lock(log->mu);
                log->slots.push_back(t.slot());
            }
            const bool ready = co_await t.wait();
            (void)ready;
            t.commit();
            continue;
        }
        log->refused.fetch_add(1);
        returning = t.held();
        backoff.expires_after(returning ? t.retry_wait()
                                        : std::min<clock::duration>(t.retry_wait(), 100ms));
        auto [ec] = co_await backoff.async_wait(use_nothrow);
        (void)ec;
    }
}

/// Starts `clients` flood clients on `in` and runs its io_context in this thread until they
/// are done (at `end`, plus a last slot's wait).
inline void flood(instance& in, flood_log& log, const std::string& name, int clients,
                  clock::time_point end) {
    std::atomic<int> active{clients};
    for (int i = 0; i < clients; ++i) {
        asio::co_spawn(in.ioc, flood_client(&in.gate, &log, name + std::to_string(i), end),
                       client_done{&log, &active});
    }
    in.ioc.restart();
    while (active.load() > 0 && clock::now() < end + 5s) {
        in.ioc.run_one_until(end + 5s);
    }
}

/// The largest excess over `burst + T / interval + slack` of the calls in any window
/// [slots[i], slots[j]]; <= 0 means the budget held in every window.
inline double worst_window_excess(std::vector<clock::time_point> slots, double burst,
                                  clock::duration step, double slack) {
    std::sort(slots.begin(), slots.end());
    double worst = -1e9;
    for (std::size_t i = 0; i < slots.size(); ++i) {
        for (std::size_t j = i; j < slots.size(); ++j) {
            const double allowed = burst +
                                   std::chrono::duration<double>(slots[j] - slots[i]) /
                                       std::chrono::duration<double>(step) +
                                   slack;
            worst = std::max(worst, static_cast<double>(j - i + 1) - allowed);
        }
    }
    return worst;
}

}  // namespace imagegate::fleet::test
