// The image route's metrics in Prometheus text: its own counters, then the gate's (budget,
// queue, refusals, pauses).
#include "gateway/image/impl.hpp"

#include "gateway/metrics/registry.hpp"

namespace imagegate::gateway {

void image_handler::render_metrics(std::string& out) const {
    const auto& s = impl_->stats;
    const auto v = [](const std::atomic<std::uint64_t>& a) {
        return a.load(std::memory_order_relaxed);
    };
    using metrics::append_sample;
    append_sample(out, "imagegate_cache_hits_total", "counter",
                  "Image requests answered fresh from the cache.", v(s.hits));
    append_sample(out, "imagegate_cache_misses_total", "counter",
                  "Image requests with no cached entry.", v(s.misses));
    append_sample(out, "imagegate_cache_stale_refetches_total", "counter",
                  "Image requests whose entry was past freshness and was fetched again.",
                  v(s.stale_refetches));
    append_sample(out, "imagegate_cache_stored_total", "counter",
                  "Validated upstream answers stored.", v(s.stored));
    append_sample(out, "imagegate_collapsed_requests_total", "counter",
                  "Requests that waited for another request's upstream fetch.", v(s.collapsed));
    append_sample(out, "imagegate_upstream_invalid_total", "counter",
                  "Upstream answers that failed validation (answered 502, not stored).",
                  v(s.invalid));
    append_sample(out, "imagegate_upstream_passthrough_total", "counter",
                  "Upstream 4xx answers passed through and not stored.", v(s.passthrough));
    append_sample(out, "imagegate_coalesce_timeouts_total", "counter",
                  "Requests that waited shield.coalesce_timeout for a fetch in vain.",
                  v(s.coalesce_timeouts));
    append_sample(out, "imagegate_upstream_failures_total", "counter",
                  "Upstream fetches that failed without an HTTP answer (connect, TLS, timeout, "
                  "protocol).",
                  v(s.upstream_errors));
    append_sample(out, "imagegate_negative_hits_total", "counter",
                  "Fresh 'image not found' answers from the cache.", v(s.negative_hits));
    out +=
        "# HELP imagegate_stale_answers_total Stale entries answered, by reason.\n"
        "# TYPE imagegate_stale_answers_total counter\n";
    append_sample(out, "imagegate_stale_answers_total", "", "", v(s.stale_swr),
                  "reason=\"stale-while-revalidate\"");
    append_sample(out, "imagegate_stale_answers_total", "", "", v(s.stale_error),
                  "reason=\"stale-if-error\"");
    append_sample(out, "imagegate_fleet_refreshes_from_l2_total", "counter",
                  "Background refreshes answered by a fresher value in L2 (another instance "
                  "refreshed the key): no upstream call.",
                  v(s.fleet_refreshes_from_l2));
    out +=
        "# HELP imagegate_upstream_uncertain_answers_total Upstream answers not certainly the "
        "request's own (unframed or followed by stray bytes): served unstored on a new "
        "connection, refused on a reused one.\n"
        "# TYPE imagegate_upstream_uncertain_answers_total counter\n";
    append_sample(out, "imagegate_upstream_uncertain_answers_total", "", "", v(s.uncertain_served),
                  "outcome=\"served_unstored\"");
    append_sample(out, "imagegate_upstream_uncertain_answers_total", "", "", v(s.uncertain_refused),
                  "outcome=\"refused\"");
    append_sample(out, "imagegate_upstream_retries_total", "counter",
                  "Second upstream attempts (connect error, stale pooled connection, "
                  "502/503/504): the one retry layer.",
                  v(s.retries));
    append_sample(out, "imagegate_upstream_retries_refused_total", "counter",
                  "Retries not made because the budget had no slot before the deadline.",
                  v(s.retry_refused));
    append_sample(out, "imagegate_budget_refused_total", "counter",
                  "Fetches refused because no budget slot was available in time.",
                  v(s.budget_refused));
    append_sample(out, "imagegate_auth_refused_total", "counter",
                  "Image requests refused: no/unknown client key (401) or account not allowed "
                  "(403).",
                  v(s.unauthorized) + v(s.forbidden));
    append_sample(out, "imagegate_pause_refused_total", "counter",
                  "Fetches refused because an upstream 429 pause was running.",
                  v(s.paused_refused));
    append_sample(out, "imagegate_fetches_abandoned_total", "counter",
                  "Queued fetches whose every client left: their slot was given back.",
                  v(s.abandoned));
    append_sample(out, "imagegate_fetches_satisfied_elsewhere_total", "counter",
                  "Queued fetches that found the entry cached when their slot came (no call).",
                  v(s.satisfied_elsewhere));
    append_sample(out, "imagegate_remembered_failures_total", "counter",
                  "Requests answered from a fetch of the same key that failed under a second "
                  "ago (no upstream call).",
                  v(s.remembered_failures));
    append_sample(out, "imagegate_clients_gone_total", "counter",
                  "Clients that hung up while waiting for an upstream answer.", v(s.clients_gone));
    impl_->gate->render_metrics(out);
    if (!impl_->policy.passthrough) {
        return;
    }
    append_sample(out, "imagegate_passthrough_proven_credentials", "gauge",
                  "Caller credentials with remembered upstream proofs (passthrough).",
                  impl_->proofs.size());
    metrics::append_header(out, "imagegate_passthrough_proofs_total", "counter",
                           "Cached entries answered to a credential with a proof (hit) or sent "
                           "upstream for lack of one (miss), and upstream refusals (rejected).");
    append_sample(out, "imagegate_passthrough_proofs_total", "", "", v(s.proof_hits),
                  "result=\"hit\"");
    append_sample(out, "imagegate_passthrough_proofs_total", "", "", v(s.proof_misses),
                  "result=\"miss\"");
    append_sample(out, "imagegate_passthrough_proofs_total", "", "", v(s.proof_rejections),
                  "result=\"rejected\"");
    append_sample(out, "imagegate_passthrough_malformed_total", "counter",
                  "Requests refused with 400 for a malformed credential (passthrough).",
                  v(s.malformed_credentials));
}

}  // namespace imagegate::gateway
