// The forwarding handler's metrics; see stats.hpp.
#include "gateway/forward/stats.hpp"

#include "gateway/metrics/registry.hpp"

namespace imagegate::gateway {

namespace {

std::size_t method_index(boost::beast::http::verb m) noexcept {
    using boost::beast::http::verb;
    switch (m) {
    case verb::get: return 0;
    case verb::head: return 1;
    case verb::post: return 2;
    case verb::put: return 3;
    case verb::patch: return 4;
    case verb::delete_: return 5;
    default: return 6;
    }
}

std::size_t class_index(unsigned status) noexcept {
    if (status >= 100 && status < 600) {
        return status / 100 - 1;
    }
    return 5;
}

}  // namespace

void forward_stats::count_call(boost::beast::http::verb method, unsigned status) noexcept {
    calls[method_index(method)][class_index(status)].fetch_add(1, std::memory_order_relaxed);
}

void forward_stats::render(std::string& out) const {
    bool first = true;
    for (std::size_t m = 0; m < methods.size(); ++m) {
        for (std::size_t c = 0; c < classes.size(); ++c) {
            const auto n = calls[m][c].load(std::memory_order_relaxed);
            if (n == 0 && !first) {
                continue;
            }
            metrics::append_sample(
                out, "imagegate_forward_requests_total", "counter",
                first ? "Forwarded calls by method and upstream status class (error: no answer)."
                      : "",
                n,
                "method=\"" + std::string(methods[m]) + "\",class=\"" + std::string(classes[c]) +
                    "\"");
            first = false;
        }
    }
    for (std::size_t r = 0; r < reasons.size(); ++r) {
        metrics::append_sample(out, "imagegate_forward_refused_total", "counter",
                               r == 0 ? "Forwards answered by the gateway without an upstream "
                                        "call, by reason."
                                      : "",
                               refused[r].load(std::memory_order_relaxed),
                               "reason=\"" + std::string(reasons[r]) + "\"");
    }
    metrics::append_sample(out, "imagegate_forward_request_bytes_total", "counter",
                           "Request body bytes forwarded upstream.",
                           request_bytes.load(std::memory_order_relaxed));
    metrics::append_sample(out, "imagegate_forward_response_bytes_total", "counter",
                           "Response body bytes passed back from forwarded calls.",
                           response_bytes.load(std::memory_order_relaxed));
    metrics::append_sample(out, "imagegate_forward_cut_total", "counter",
                           "Forwarded answers whose body could not be completed (the client's "
                           "connection was closed).",
                           cut.load(std::memory_order_relaxed));
}

}  // namespace imagegate::gateway
