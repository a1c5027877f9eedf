// The lifecycle of one pooled upstream connection as a pure state machine (no sockets, no
// clock), plus the pure sizing rule that decides how many connections the pool opens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>

namespace imagegate::upstream {

/// Where a slot (one connection the pool counts against max_connections) is.
enum class slot_state {
    connecting,  ///< resolve/connect/handshake in flight; counts toward max_connections
    idle,        ///< connected, parked in the pool, no I/O pending, stream expiry disarmed
    in_use,      ///< lent to exactly one lease holder, who alone touches the stream
    closing,     ///< retired; stays counted until the task that still owns the stream is done
};

/// What happened to a slot.
enum class slot_event {
    connect_succeeded,  ///< the connect task finished without error
    connect_failed,     ///< the connect task finished with an error (or was aborted)
    acquired,           ///< an acquirer took the idle connection
    released_reusable,  ///< the lease ended after a complete keep-alive exchange
    released_broken,    ///< the lease ended any other way (error, timeout, not marked)
    idle_expired,       ///< the connection sat idle for idle_timeout
    evicted,            ///< closed while idle: room for a fresh connection (retry path), or
                        ///< found readable (unread bytes, peer close) when about to be lent
    shutdown,           ///< the pool is shutting down
};

/// What the pool must do after the transition.
enum class slot_action {
    none,            ///< nothing; the slot waits for its owner to report back
    hand_to_waiter,  ///< give the connection to the first waiter (slot stays in_use)
    lend,            ///< the connection goes to the acquirer that triggered the event
    park,            ///< keep the connection as idle for later reuse
    close,           ///< close the connection and erase the slot (frees room)
    abort,           ///< close the stream to abort its I/O; keep the slot until its owner reports
    invalid,         ///< the event cannot happen in this state: a pool bug
};

/// Limits the transition function applies.
struct slot_limits {
    /// A connection is retired after this many exchanges (0 means unlimited).
    std::uint64_t max_requests_per_connection = 0;
};

/// The facts about the slot and its pool that the transition depends on.
struct slot_facts {
    /// Exchanges this connection has completed so far.
    std::uint64_t requests_served = 0;
    /// Acquirers queued for a connection.
    std::size_t waiters = 0;
    /// The first queued acquirer asked for a connection that has never been used (retry).
    bool first_waiter_wants_fresh = false;
};

struct slot_transition {
    slot_state next;
    slot_action action;
    friend bool operator==(const slot_transition&, const slot_transition&) = default;
};

/// The slot state machine. Pure and total: every (state, event) pair has an answer, the
/// impossible ones answer `slot_action::invalid` with the state unchanged.
slot_transition transition(slot_state state, slot_event event, const slot_facts& facts,
                           const slot_limits& limits) noexcept;

/// Limits for the sizing rule.
struct pool_limits {
    /// Open connections at most (connecting + idle + in use + closing).
    std::size_t max_connections = 1;
};

/// How many connections to start opening now. Each queued waiter should have one connect
/// in flight for it (a connect completes into the first waiter, FIFO); never exceed
/// max_connections. `current` counts every slot, including `pending_connects`.
/// Precondition: pending_connects <= current.
std::size_t connections_to_open(const pool_limits& limits, std::size_t current,
                                std::size_t pending_connects, std::size_t waiters) noexcept;

std::ostream& operator<<(std::ostream& os, slot_state s);
std::ostream& operator<<(std::ostream& os, slot_event e);
std::ostream& operator<<(std::ostream& os, slot_action a);
std::ostream& operator<<(std::ostream& os, const slot_transition& t);

}  // namespace imagegate::upstream
