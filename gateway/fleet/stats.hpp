// The fleet tier's counters (L2, lease, purge events, subscriber resyncs) and their
// Prometheus rendering.
#pragma once

#include "gateway/metrics/registry.hpp"
#include "gateway/redis/client.hpp"

#include <atomic>
#include <cstdint>
#include <string>

namespace imagegate::fleet {

/// Thread-safety: any thread; relaxed atomics.
struct fleet_stats {
    using counter = std::atomic<std::uint64_t>;
    counter l2_hits{0};             ///< L1 misses answered from L2
    counter l2_misses{0};           ///< L2 had nothing
    counter l2_errors{0};           ///< GET without a reply (timeout, down, lost)
    counter l2_skipped{0};          ///< not asked: the breaker was open
    counter l2_refused_invalid{0};  ///< values refused by the decoder or the validator
    counter l2_writes{0};           ///< SET … PX issued
    counter l2_write_errors{0};     ///< SET without an OK
    counter l2_writes_dropped{0};   ///< not written: too many writes in flight, or breaker open
    counter lease_wins{0};          ///< this instance took a key's fill lease and fetched
    counter lease_waits{0};         ///< another instance held the lease: waited
    counter lease_wait_hits{0};     ///< … and then found the key in L2
    counter lease_timeouts{0};      ///< … and found nothing until the lease ended: fetched
    counter lease_late_fills{0};    ///< a lease taken just after its holder filled: no fetch
    counter purge_sent{0};          ///< purge events published
    counter purge_failed{0};        ///< purges that could not be broadcast (answered 503)
    counter purge_received{0};      ///< purge events from other instances applied
    counter fills_received{0};      ///< "filled" events received
    counter events_refused{0};      ///< event payloads that failed the strict parser
    counter l1_flushes{0};          ///< L1 flushed on (re)subscription
    metrics::histogram l2_latency{redis::latency_bounds};  ///< GET round trip, replies only

    /// imagegate_fleet_* counters and imagegate_fleet_l2_get_seconds.
    void render(std::string& out) const;
};

}  // namespace imagegate::fleet
