#include "gateway/upstream/stats.hpp"

#include "gateway/upstream/headers.hpp"

#include <cstdio>

namespace imagegate::upstream {

namespace {

constexpr auto relaxed = std::memory_order_relaxed;

void append_number(std::string& out, std::uint64_t n) { out += std::to_string(n); }

// One `imagegate_upstream_<name>` sample with its HELP/TYPE lines, in the project's one
// Prometheus writer.
void append_counter(std::string& out, std::string_view name, std::string_view type,
                    std::string_view help, const std::atomic<std::uint64_t>& v) {
    metrics::append_sample(out, "imagegate_upstream_" + std::string(name), type, help,
                           v.load(relaxed));
}

}  // namespace

void stats::count_status(unsigned status) noexcept {
    switch (status_class(status)) {
    case 2: responses_2xx.fetch_add(1, relaxed); break;
    case 3: responses_3xx.fetch_add(1, relaxed); break;
    case 4: responses_4xx.fetch_add(1, relaxed); break;
    case 5: responses_5xx.fetch_add(1, relaxed); break;
    default: responses_other.fetch_add(1, relaxed); break;
    }
    switch (status) {
    case 200: responses_200.fetch_add(1, relaxed); break;
    case 404: responses_404.fetch_add(1, relaxed); break;
    case 429: responses_429.fetch_add(1, relaxed); break;
    default: break;
    }
}

void stats::count_error(errc e) noexcept {
    switch (e) {
    case errc::upstream_connect_failed: connect_failures.fetch_add(1, relaxed); break;
    case errc::upstream_tls_failed: tls_failures.fetch_add(1, relaxed); break;
    case errc::upstream_timeout: timeouts.fetch_add(1, relaxed); break;
    case errc::upstream_too_large: too_large.fetch_add(1, relaxed); break;
    case errc::upstream_protocol_error: protocol_errors.fetch_add(1, relaxed); break;
    default: break;
    }
}

void stats::render(std::string& out) const {
    constexpr std::string_view responses_help = "Complete upstream responses by status.";
    out += "# HELP imagegate_upstream_responses_total ";
    out += responses_help;
    out += "\n# TYPE imagegate_upstream_responses_total counter\n";
    const struct {
        std::string_view label;
        const counter& value;
    } by_status[] = {
        {"2xx", responses_2xx}, {"3xx", responses_3xx},     {"4xx", responses_4xx},
        {"5xx", responses_5xx}, {"other", responses_other},
    };
    for (const auto& row : by_status) {
        out += "imagegate_upstream_responses_total{class=\"";
        out += row.label;
        out += "\"} ";
        append_number(out, row.value.load(relaxed));
        out += '\n';
    }
    const struct {
        std::string_view label;
        const counter& value;
    } exact[] = {{"200", responses_200}, {"404", responses_404}, {"429", responses_429}};
    out +=
        "# HELP imagegate_upstream_responses_by_code_total Upstream responses with the "
        "statuses the gateway branches on.\n"
        "# TYPE imagegate_upstream_responses_by_code_total counter\n";
    for (const auto& row : exact) {
        out += "imagegate_upstream_responses_by_code_total{code=\"";
        out += row.label;
        out += "\"} ";
        append_number(out, row.value.load(relaxed));
        out += '\n';
    }
    append_counter(out, "connects_total", "counter", "Upstream connections established.", connects);
    append_counter(out, "tls_resumptions_total", "counter",
                   "Upstream connections whose TLS handshake resumed an earlier session.",
                   tls_resumptions);
    append_counter(out, "connect_failures_total", "counter", "Resolve or TCP connect failures.",
                   connect_failures);
    append_counter(out, "tls_failures_total", "counter",
                   "TLS handshake or certificate verification failures.", tls_failures);
    append_counter(out, "timeouts_total", "counter", "Connect or exchange deadlines passed.",
                   timeouts);
    append_counter(out, "too_large_total", "counter", "Responses over the body limit.", too_large);
    append_counter(out, "protocol_errors_total", "counter",
                   "Malformed, truncated or reset responses.", protocol_errors);
    append_counter(out, "reuses_total", "counter", "Exchanges on a reused connection.", reuses);
    append_counter(out, "unread_discards_total", "counter",
                   "Idle connections closed because they had unread bytes or a peer close.",
                   unread_discards);
    append_counter(out, "interim_responses_total", "counter",
                   "Interim (1xx) responses skipped before final responses.", interim_skipped);
    append_counter(out, "idle_closes_total", "counter",
                   "Idle connections closed after the idle timeout.", idle_closes);
    append_counter(out, "retired_total", "counter",
                   "Connections closed after max requests per connection.", retired);
    append_counter(out, "acquire_waits_total", "counter", "Acquires that found no idle connection.",
                   acquire_waits);
    append_counter(out, "acquire_timeouts_total", "counter",
                   "Acquires that gave up waiting (pool exhausted).", acquire_timeouts);
    out +=
        "# HELP imagegate_upstream_exchanges_total Upstream exchanges started, by the I/O "
        "worker whose connection pool ran them.\n"
        "# TYPE imagegate_upstream_exchanges_total counter\n";
    for (std::size_t i = 0; i < exchanges_by_worker.size(); ++i) {
        out += "imagegate_upstream_exchanges_total{worker=\"";
        append_number(out, i);
        out += "\"} ";
        append_number(out, exchanges_by_worker[i].load(relaxed));
        out += '\n';
    }
    append_counter(out, "connections_in_use", "gauge", "Connections lent out.", in_use);
    append_counter(out, "connections_idle", "gauge", "Connections parked idle.", idle);
    latency.render(out, "imagegate_upstream_latency_seconds",
                   "Upstream exchange latency (request written to last byte read).");
}

}  // namespace imagegate::upstream
