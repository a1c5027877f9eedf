#include "gateway/upstream/pool_slot.hpp"

#include <boost/assert.hpp>

#include <algorithm>
#include <ostream>

namespace imagegate::upstream {

namespace {

bool is_worn_out(const slot_facts& facts, const slot_limits& limits) noexcept {
    return limits.max_requests_per_connection != 0 &&
           facts.requests_served >= limits.max_requests_per_connection;
}

}  // namespace

slot_transition transition(slot_state state, slot_event event, const slot_facts& facts,
                           const slot_limits& limits) noexcept {
    using s = slot_state;
    using e = slot_event;
    using a = slot_action;
    switch (state) {
    case s::connecting:
        switch (event) {
        case e::connect_succeeded:
            // A fresh connection goes straight to the oldest waiter: it is why it was opened.
            if (facts.waiters > 0) {
                return {s::in_use, a::hand_to_waiter};
            }
            return {s::idle, a::park};
        case e::connect_failed: return {s::closing, a::close};
        case e::shutdown: return {s::closing, a::abort};
        default: return {state, a::invalid};
        }
    case s::idle:
        switch (event) {
        case e::acquired: return {s::in_use, a::lend};
        case e::idle_expired:
        case e::evicted:
        case e::shutdown: return {s::closing, a::close};
        default: return {state, a::invalid};
        }
    case s::in_use:
        switch (event) {
        case e::released_reusable:
            if (is_worn_out(facts, limits)) {
                return {s::closing, a::close};
            }
            if (facts.waiters > 0) {
                // A retrying waiter must not get a used connection: close this one so the
                // freed room opens a new one, which then reaches that waiter (FIFO).
                if (facts.first_waiter_wants_fresh) {
                    return {s::closing, a::close};
                }
                return {s::in_use, a::hand_to_waiter};
            }
            return {s::idle, a::park};
        case e::released_broken: return {s::closing, a::close};
        case e::shutdown:
            // The lease holder still owns the slot; the pool only closes the stream (on the
            // connection's worker, so not concurrently with the holder's I/O), which fails
            // the exchange at once. The release then finds the slot closing and erases it.
            return {s::closing, a::abort};
        default: return {state, a::invalid};
        }
    case s::closing:
        switch (event) {
        case e::connect_succeeded:
        case e::connect_failed:
        case e::released_reusable:
        case e::released_broken: return {s::closing, a::close};
        case e::shutdown: return {s::closing, a::none};
        default: return {state, a::invalid};
        }
    }
    return {state, a::invalid};
}

std::size_t connections_to_open(const pool_limits& limits, std::size_t current,
                                std::size_t pending_connects, std::size_t waiters) noexcept {
    BOOST_ASSERT(pending_connects <= current);
    const std::size_t wanted = waiters > pending_connects ? waiters - pending_connects : 0;
    const std::size_t room =
        limits.max_connections > current ? limits.max_connections - current : 0;
    return std::min(wanted, room);
}

std::ostream& operator<<(std::ostream& os, slot_state s) {
    switch (s) {
    case slot_state::connecting: return os << "connecting";
    case slot_state::idle: return os << "idle";
    case slot_state::in_use: return os << "in_use";
    case slot_state::closing: return os << "closing";
    }
    return os << "slot_state(" << static_cast<int>(s) << ")";
}

std::ostream& operator<<(std::ostream& os, slot_event e) {
    switch (e) {
    case slot_event::connect_succeeded: return os << "connect_succeeded";
    case slot_event::connect_failed: return os << "connect_failed";
    case slot_event::acquired: return os << "acquired";
    case slot_event::released_reusable: return os << "released_reusable";
    case slot_event::released_broken: return os << "released_broken";
    case slot_event::idle_expired: return os << "idle_expired";
    case slot_event::evicted: return os << "evicted";
    case slot_event::shutdown: return os << "shutdown";
    }
    return os << "slot_event(" << static_cast<int>(e) << ")";
}

std::ostream& operator<<(std::ostream& os, slot_action a) {
    switch (a) {
    case slot_action::none: return os << "none";
    case slot_action::hand_to_waiter: return os << "hand_to_waiter";
    case slot_action::lend: return os << "lend";
    case slot_action::park: return os << "park";
    case slot_action::close: return os << "close";
    case slot_action::abort: return os << "abort";
    case slot_action::invalid: return os << "invalid";
    }
    return os << "slot_action(" << static_cast<int>(a) << ")";
}

std::ostream& operator<<(std::ostream& os, const slot_transition& t) {
    return os << "{" << t.next << ", " << t.action << "}";
}

}  // namespace imagegate::upstream
