// admission::local_gate and tickets: decisions and their reasons at an injected time (token
// mode and passthrough), and the waiting part on a real io_context: woken once at the slot,
// earlier when a slot ahead is given back, at once when abandoned from another thread.
#define BOOST_TEST_MODULE unit_admission
#include "gateway/admission/local_gate.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <future>
#include <stdexcept>
#include <thread>

namespace adm = imagegate::admission;
namespace shield = imagegate::shield;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using steady = adm::clock;

namespace {

const steady::time_point t0 = steady::time_point{} + std::chrono::hours(1000);

// One slot per second, two back to back.
adm::local_gate_options token_mode() {
    return {.budget = {.budget = 10, .window = 10s, .burst = 2, .background_reserve_percent = 0},
            .limit = {},
            .passthrough = false,
            .unproven_budget = 600,
            .max_credentials = 4096};
}

adm::call foreground(std::string_view key, steady::duration max_wait) {
    return {.key = key, .prio = shield::priority::foreground, .max_wait = max_wait};
}

imagegate::credential_digest digest(unsigned char n) {
    imagegate::credential_digest d{};
    d[0] = n;
    return d;
}

std::uint64_t refused(const adm::local_gate& g, adm::refusal r) {
    return g.stats().refused[static_cast<std::size_t>(r)].load();
}

}  // namespace

BOOST_AUTO_TEST_CASE(token_mode_decisions_and_reasons) {
    adm::local_gate g(token_mode());
    auto a = g.decide(foreground("a", 3s), t0);
    auto b = g.decide(foreground("b", 3s), t0);
    auto c = g.decide(foreground("c", 3s), t0);
    BOOST_TEST(a.granted());
    BOOST_TEST(b.granted());
    BOOST_TEST(c.granted());
    BOOST_TEST((c.slot() == t0 + 1s));  // queued: woken at its slot
    // Beyond the queue cap: refused at once with the slot held for the key.
    auto d = g.decide(foreground("d", 500ms), t0);
    BOOST_TEST(!d.granted());
    BOOST_TEST((d.reason() == adm::refusal::queue_full));
    BOOST_TEST(d.held());
    BOOST_TEST((d.retry_wait() == 2s));
    // The same key back early: the same slot, no second hold.
    auto d2 = g.decide(foreground("d", 500ms), t0 + 1s);
    BOOST_TEST((d2.reason() == adm::refusal::held));
    BOOST_TEST((d2.retry_wait() == 1s));
    // On time: its slot.
    auto d3 = g.decide(foreground("d", 500ms), t0 + 1800ms);
    BOOST_TEST(d3.granted());
    BOOST_TEST(d3.held());
    BOOST_TEST((d3.slot() == t0 + 2s));
    // Background never queues.
    auto e = g.decide({.key = "e", .prio = shield::priority::background}, t0 + 1800ms);
    BOOST_TEST((e.reason() == adm::refusal::reserve));
    // An upstream 429 pauses everything for its Retry-After.
    const auto paused = g.observe(
        nullptr, {.status = 429, .retry_after = "30", .ratelimit = {}, .ratelimit_policy = {}});
    BOOST_TEST(paused.has_value());
    auto f = g.decide(foreground("f", 3s), steady::now() + 1s);
    BOOST_TEST((f.reason() == adm::refusal::paused));
    BOOST_TEST((f.retry_wait() > 28s));
    const auto& s = g.stats();
    BOOST_TEST(s.granted_now.load() == 2u);
    BOOST_TEST(s.granted_queued.load() == 1u);
    BOOST_TEST(s.granted_held.load() == 1u);
    BOOST_TEST(refused(g, adm::refusal::queue_full) == 1u);
    BOOST_TEST(refused(g, adm::refusal::held) == 1u);
    BOOST_TEST(refused(g, adm::refusal::reserve) == 1u);
    BOOST_TEST(refused(g, adm::refusal::paused) == 1u);
    std::string metrics;
    g.render_metrics(metrics);
    BOOST_TEST(metrics.find("imagegate_budget_refusals_total{reason=\"queue_full\"} 1") !=
               std::string::npos);
    BOOST_TEST(metrics.find("imagegate_upstream_paused 1") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(passthrough_pause_unproven_and_full_table) {
    auto o = token_mode();
    o.passthrough = true;
    o.unproven_budget = 1;
    o.max_credentials = 2;
    adm::local_gate g(o);
    const auto one = digest(1);
    const auto two = digest(2);
    const auto three = digest(3);
    auto call = [](const imagegate::credential_digest& d, bool proven) {
        return adm::call{.key = "k",
                         .prio = shield::priority::foreground,
                         .max_wait = 0s,
                         .credential = &d,
                         .proven = proven};
    };
    // Credentials without a proof share one budget (1 per window here).
    auto a = g.decide(call(one, false), t0);
    BOOST_TEST(a.granted());
    auto b = g.decide(call(two, false), t0);
    BOOST_TEST((b.reason() == adm::refusal::unproven));
    // A proven credential is not charged there; its own shield decides.
    auto c = g.decide(call(two, true), t0);
    BOOST_TEST(c.granted());
    // The table (2) is full of shields in use: a third credential waits its turn.
    auto d = g.decide(call(three, true), t0);
    BOOST_TEST((d.reason() == adm::refusal::credentials_full));
    // A pause belongs to its credential only.
    g.observe(&one, {.status = 429, .retry_after = "60", .ratelimit = {}, .ratelimit_policy = {}});
    auto e = g.decide(call(one, true), steady::now());
    BOOST_TEST((e.reason() == adm::refusal::paused));
    a.commit();
    c.commit();
}

BOOST_AUTO_TEST_CASE(resize_keeps_spent_calls_in_every_budget) {
    // The gate's clock is moved by hand: resize() reads it, decide() is given it.
    const imagegate::time_source clock;
    auto o = token_mode();
    o.time = &clock;
    o.passthrough = true;
    o.unproven_budget = 4;
    adm::local_gate g(o);
    const auto one = digest(1);
    auto call = [](const imagegate::credential_digest& d, bool proven) {
        return adm::call{.key = {},
                         .prio = shield::priority::foreground,
                         .max_wait = 0s,
                         .credential = &d,
                         .proven = proven};
    };
    const auto start = clock.now();
    // Both tokens of the credential's bucket (burst 2, 1 s each); one of the unproven budget.
    for (int i = 0; i < 2; ++i) {
        auto t = g.decide(call(one, i == 0 ? false : true), start);
        BOOST_TEST_REQUIRE(t.granted());
        t.commit();
    }
    // Half the budget: the 2 spent calls now stand for 4 s; a burst of 2 tolerates 2 s.
    g.resize({.budget = 5, .window = 10s, .burst = 2, .unproven_budget = 4});
    const auto after = clock.now();
    auto refused = g.decide(call(one, true), after);
    BOOST_TEST((refused.reason() == adm::refusal::queue_full));
    BOOST_TEST(refused.retry_wait() <= 2s);
    BOOST_TEST(refused.retry_wait() > 1s);
    // Raised budget and burst: 4 s ahead is 2 calls of 500 ms against a tolerance of 1.5 s.
    g.resize({.budget = 20, .window = 10s, .burst = 4, .unproven_budget = 1});
    const auto later = clock.now();
    for (int i = 0; i < 2; ++i) {
        auto t = g.decide(call(one, true), later);
        BOOST_TEST(t.granted());
        t.commit();
    }
    BOOST_TEST(!g.decide(call(one, true), later).granted());
    // The unproven budget shrank to 1 while its one call stays spent: nothing left.
    const auto two = digest(2);
    BOOST_TEST((g.decide(call(two, false), later).reason() == adm::refusal::unproven));
    // Unusable sizes change nothing.
    BOOST_CHECK_THROW(g.resize({.budget = 0, .window = 10s, .burst = 1, .unproven_budget = 1}),
                      std::invalid_argument);
}

namespace {

/// Runs `ticket.wait()` on `ioc` and returns when it completed (and its result).
std::future<bool> start_wait(asio::io_context& ioc, adm::ticket& t) {
    return asio::co_spawn(ioc, t.wait(), asio::use_future);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_released_slot_wakes_the_latest_waiter_early) {
    // One slot per 400 ms: A now, B at +400 ms, C at +800 ms. B leaves at once; C takes its
    // slot (the last slot goes back) and is woken at +400 ms by its one timer.
    adm::local_gate g({.budget = {.budget = 25, .window = 10s, .burst = 1},
                       .limit = {},
                       .passthrough = false,
                       .unproven_budget = 600,
                       .max_credentials = 4096});
    asio::io_context ioc;
    const auto start = steady::now();
    auto a = g.decide(foreground("a", 2s), start);
    auto b = g.decide(foreground("b", 2s), start);
    auto c = g.decide(foreground("c", 2s), start);
    BOOST_TEST((c.slot() == start + 800ms));
    auto waited = start_wait(ioc, c);
    b.release();
    BOOST_TEST((c.slot() == start + 400ms));
    std::thread runner([&] { ioc.run(); });
    BOOST_REQUIRE(waited.wait_for(5s) == std::future_status::ready);
    const auto woke = steady::now();
    runner.join();
    BOOST_TEST(waited.get());
    BOOST_TEST((woke >= start + 400ms));
    BOOST_TEST((woke < start + 700ms));
    // The next arrival finds the given-back slot.
    auto d = g.decide(foreground("d", 2s), start);
    BOOST_TEST((d.slot() == start + 800ms));
    a.commit();
    c.commit();
}

BOOST_AUTO_TEST_CASE(an_abandoned_wait_ends_at_once_and_gives_the_slot_back) {
    adm::local_gate g(token_mode());
    asio::io_context ioc;
    const auto now = steady::now();
    auto a = g.decide(foreground("a", 10s), now);
    auto b = g.decide(foreground("b", 10s), now);
    auto c = g.decide(foreground("c", 10s), now);  // slot in 1 s
    auto waited = start_wait(ioc, c);
    std::thread runner([&] { ioc.run(); });
    const auto abandon = c.abandoner();
    std::thread([&] { abandon(); }).join();  // the flight's last member left, elsewhere
    BOOST_REQUIRE(waited.wait_for(5s) == std::future_status::ready);
    runner.join();
    BOOST_TEST(!waited.get());
    BOOST_TEST((steady::now() < now + 900ms));
    c.release_abandoned();
    BOOST_TEST(g.stats().abandoned.load() == 1u);
    BOOST_TEST(g.stats().released.load() == 1u);
    // Its slot went back: the next caller gets it.
    auto d = g.decide(foreground("d", 10s), now);
    BOOST_TEST((d.slot() == now + 1s));
    a.commit();
    b.commit();
}
