#include "gateway/fleet/stats.hpp"

namespace imagegate::fleet {

void fleet_stats::render(std::string& out) const {
    using metrics::append_sample;
    const auto get = [](const counter& c) { return c.load(std::memory_order_relaxed); };
    const auto add = [&](std::string_view name, std::string_view help, const counter& c) {
        append_sample(out, name, "counter", help, get(c));
    };
    add("imagegate_fleet_l2_hits_total", "L1 misses answered from the shared L2 cache.", l2_hits);
    add("imagegate_fleet_l2_misses_total", "L2 lookups that found nothing.", l2_misses);
    add("imagegate_fleet_l2_errors_total", "L2 lookups without a Redis reply (counted as misses).",
        l2_errors);
    add("imagegate_fleet_l2_skipped_total", "L2 lookups skipped while the Redis breaker is open.",
        l2_skipped);
    add("imagegate_fleet_l2_refused_invalid_total",
        "L2 values refused by the decoder or the validator (refetched, never served).",
        l2_refused_invalid);
    add("imagegate_fleet_l2_writes_total", "Validated answers written to L2 (SET PX).", l2_writes);
    add("imagegate_fleet_l2_write_errors_total", "L2 writes without an OK.", l2_write_errors);
    add("imagegate_fleet_l2_writes_dropped_total",
        "L2 writes skipped: too many in flight or the breaker open.", l2_writes_dropped);
    add("imagegate_fleet_lease_wins_total", "Fill leases taken: this instance fetched the key.",
        lease_wins);
    add("imagegate_fleet_lease_waits_total", "Fetches that waited for another instance's lease.",
        lease_waits);
    add("imagegate_fleet_lease_wait_hits_total", "Lease waits that ended with an L2 hit.",
        lease_wait_hits);
    add("imagegate_fleet_lease_timeouts_total",
        "Lease waits that found nothing before the lease ended (fetched locally).", lease_timeouts);
    add("imagegate_fleet_lease_late_fills_total",
        "Leases taken right after the holder filled the key: found in L2, not fetched again.",
        lease_late_fills);
    add("imagegate_fleet_purge_events_sent_total", "Purge events published.", purge_sent);
    add("imagegate_fleet_purge_failed_total", "Purges that could not be broadcast (answered 503).",
        purge_failed);
    add("imagegate_fleet_purge_events_received_total",
        "Purge events from other instances applied to L1.", purge_received);
    add("imagegate_fleet_fill_events_received_total", "Filled events received.", fills_received);
    add("imagegate_fleet_events_refused_total", "Event payloads refused by the parser.",
        events_refused);
    add("imagegate_fleet_l1_flushes_total",
        "L1 flushes on (re)subscription (events may have been missed).", l1_flushes);
    l2_latency.render(out, "imagegate_fleet_l2_get_seconds", "L2 GET latency (replies only).");
}

}  // namespace imagegate::fleet
