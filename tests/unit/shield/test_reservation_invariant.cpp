// The budget's promise with reservations, on simulated clients and a fake clock: calls go out
// at their slots (a held slot claimed late: within its grace), clients leave queued slots and
// give them back, refused clients come back after their Retry-After — and (1) no window ever
// holds more than burst + (T + grace) / interval calls, (2) a client that comes back for its
// held slot on time always gets it.
#include "gateway/shield/budget.hpp"
#include "print.hpp"

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <queue>
#include <random>
#include <vector>

namespace imagegate::shield {
namespace {

namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;

const time_point t0 = time_point{} + std::chrono::hours(1000);

enum class kind { act, go, leave, background };

struct event {
    time_point at;
    kind what;
    std::size_t client = 0;
    std::uint64_t generation = 0;  // stale when the client's generation moved on
    bool operator>(const event& o) const { return at > o.at; }
};

/// How a refused client honours the answer.
enum class obedience { milliseconds, seconds, late };

struct client {
    std::uint64_t key = 0;
    std::uint64_t generation = 0;
    reservation held_grant;  // the grant it waits on
    bool returning = false;  // came back for a held slot
    obedience style = obedience::milliseconds;
};

duration uniform(std::mt19937_64& rng, duration lo, duration hi) {
    const auto span = static_cast<std::uint64_t>((hi - lo).count()) + 1;
    return lo + duration(static_cast<duration::rep>(rng() % span));
}

struct outcome {
    std::vector<time_point> calls;
    std::uint64_t returns = 0;          // came back on time for a held slot
    std::uint64_t returns_refused = 0;  // ... and did not get it: must stay 0
};

outcome simulate(budget& b, std::uint64_t seed, std::size_t clients, duration length) {
    std::mt19937_64 rng(seed);
    std::priority_queue<event, std::vector<event>, std::greater<>> events;
    std::vector<client> cs(clients);
    outcome out;
    std::uint64_t next_key = 1;
    for (std::size_t i = 0; i < cs.size(); ++i) {
        cs[i].key = next_key++;
        cs[i].style = static_cast<obedience>(i % 3);
        events.push({t0 + uniform(rng, 0s, 2s), kind::act, i, 0});
    }
    events.push({t0, kind::background});
    const time_point end = t0 + length;
    const duration grace = b.options().hold_grace;
    while (!events.empty() && events.top().at < end) {
        const event e = events.top();
        events.pop();
        const time_point now = e.at;
        if (e.what == kind::background) {
            const auto r = b.reserve({.now = now, .prio = priority::background});
            if (r.granted) {
                out.calls.push_back(now);
            }
            events.push({now + uniform(rng, 0s, 500ms), kind::background});
            continue;
        }
        client& c = cs[e.client];
        if (e.generation != c.generation) {
            continue;  // superseded (the grant moved)
        }
        switch (e.what) {
        case kind::act: {
            const auto r = b.reserve({.now = now, .max_wait = uniform(rng, 1s, 3s), .key = c.key});
            if (c.returning) {
                ++out.returns;
                out.returns_refused += r.granted ? 0 : 1;
                c.returning = false;
            }
            if (r.granted) {
                c.held_grant = r;
                ++c.generation;
                if (r.slot > now && rng() % 8 == 0) {
                    // The client hangs up before its slot: the slot goes back or on.
                    events.push({now + uniform(rng, 0ns, r.slot - now - 1ns), kind::leave, e.client,
                                 c.generation});
                } else {
                    events.push({std::max(r.slot, now), kind::go, e.client, c.generation});
                }
            } else if (r.held) {
                const retry_advice a = advise_retry(r.slot - now, true);
                duration back = a.milliseconds + uniform(rng, 0ms, 2ms);
                if (c.style == obedience::seconds) {
                    back = a.seconds + uniform(rng, 0ms, 5ms);
                } else if (c.style == obedience::late) {
                    back = a.milliseconds + uniform(rng, 0ms, grace - 50ms);
                }
                c.returning = true;
                events.push({now + back, kind::act, e.client, c.generation});
            } else {
                events.push({now + advise_retry(r.slot - now, false).seconds, kind::act, e.client,
                             c.generation});
            }
            break;
        }
        case kind::go:
            b.commit(c.held_grant);
            out.calls.push_back(now);
            c.key = next_key++;
            events.push({now + uniform(rng, 0s, 1s), kind::act, e.client, c.generation});
            break;
        case kind::leave: {
            const auto res = b.release(c.held_grant, now);
            if (res.moved_id != 0) {
                for (std::size_t i = 0; i < cs.size(); ++i) {
                    if (cs[i].held_grant.id == res.moved_id) {
                        ++cs[i].generation;
                        cs[i].held_grant.slot = res.moved_to;
                        events.push({res.moved_to, kind::go, i, cs[i].generation});
                    }
                }
            }
            c.key = next_key++;
            events.push({now + uniform(rng, 0s, 1s), kind::act, e.client, c.generation});
            break;
        }
        case kind::background: break;
        }
    }
    std::sort(out.calls.begin(), out.calls.end());
    return out;
}

std::size_t max_in_window(const std::vector<time_point>& calls, duration length) {
    std::size_t best = 0;
    std::size_t end = 0;
    for (std::size_t begin = 0; begin < calls.size(); ++begin) {
        while (end < calls.size() && calls[end] - calls[begin] <= length) {
            ++end;
        }
        best = std::max(best, end - begin);
    }
    return best;
}

struct load {
    const char* name;
    budget_options options;
    std::size_t clients;
};

std::ostream& operator<<(std::ostream& os, const load& l) { return os << l.name; }

const load loads[] = {
    // 10x the budget: 20 clients that would each call about once a second, 2 slots per second
    {"2/s burst 5, 20 clients", {.budget = 20, .window = 10s, .burst = 5}, 20},
    // heavier: the 60 s hold horizon fills up and some refusals are not held
    {"1/s burst 2, 80 clients", {.budget = 10, .window = 10s, .burst = 2}, 80},
    // the scaled soak's numbers: 60 per 30 s, burst 10
    {"60/30s burst 10, 40 clients", {.budget = 60, .window = 30s, .burst = 10}, 40},
};

const std::uint64_t seeds[] = {1, 2, 3};

}  // namespace

BOOST_AUTO_TEST_SUITE(reservation_invariant)

BOOST_DATA_TEST_CASE(calls_stay_inside_the_budget_and_held_slots_are_found,
                     bdata::make(loads) * bdata::make(seeds), l, seed) {
    budget b(l.options);
    const outcome o = simulate(b, seed, l.clients, 10min);
    const duration interval = b.interval();
    const duration grace = l.options.hold_grace;
    const duration lengths[] = {0ns, interval - 1ns, interval, 10 * interval, 1min, 5min};
    for (const duration length : lengths) {
        BOOST_TEST_CONTEXT("window " << length << ", " << o.calls.size() << " calls") {
            const auto bound =
                l.options.burst + static_cast<std::uint64_t>((length + grace) / interval);
            BOOST_TEST(max_in_window(o.calls, length) <= bound);
        }
    }
    const budget_counters c = b.counters();
    BOOST_TEST_MESSAGE(l.name << " seed " << seed << ": " << o.calls.size() << " calls, "
                              << o.returns << " returns, " << c);
    // The load was real: queued, held and claimed slots happened, and slots left by clients
    // that hung up went back or on (with 80 clients nearly every slot is a held one).
    BOOST_TEST(c.queued > 0u);
    BOOST_TEST(c.holds_claimed > 0u);
    BOOST_TEST((c.handed_on + c.given_back > 0u || c.queued < 20u));
    // Truthful Retry-After: whoever came back when told (or within the grace) got its slot.
    BOOST_TEST(o.returns > 0u);
    BOOST_TEST(o.returns_refused == 0u);
    // And the budget was used: at least 90 % of what it allows over the run.
    const auto allowed = static_cast<std::uint64_t>(10min / interval);
    BOOST_TEST(o.calls.size() * 10 >= allowed * 9);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace imagegate::shield
