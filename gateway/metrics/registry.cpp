#include "gateway/metrics/registry.hpp"

#include <cstdio>

namespace imagegate::metrics {
namespace {

std::size_t route_index(std::string_view route) noexcept {
    for (std::size_t i = 0; i < registry::routes.size(); ++i) {
        if (registry::routes[i] == route) {
            return i;
        }
    }
    return registry::routes.size() - 1;
}

std::size_t status_index(unsigned status) noexcept {
    for (std::size_t i = 0; i + 1 < registry::statuses.size(); ++i) {
        if (registry::statuses[i] == status) {
            return i;
        }
    }
    return registry::statuses.size() - 1;
}

/// Microseconds as Prometheus seconds without floating-point noise ("0.0005", "10").
void append_us_as_seconds(std::string& out, std::uint64_t us) {
    out += std::to_string(us / 1'000'000);
    if (const auto frac = us % 1'000'000; frac != 0) {
        char buf[16];
        std::snprintf(buf, sizeof buf, ".%06u", static_cast<unsigned>(frac));
        std::string_view f(buf);
        while (f.back() == '0') {
            f.remove_suffix(1);
        }
        out += f;
    }
}

}  // namespace

void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

void histogram::observe(std::chrono::steady_clock::duration d) noexcept {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    const auto u = us < 0 ? std::uint64_t{0} : static_cast<std::uint64_t>(us);
    std::size_t i = 0;
    while (i < bounds_.size() && u > bounds_[i]) {
        ++i;
    }
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(u, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
}

void histogram::render(std::string& out, std::string_view name, std::string_view help,
                       std::string_view labels) const {
    if (!help.empty()) {
        append_header(out, name, "histogram", help);
    }
    const auto with_labels = [&](std::string_view suffix) {
        out += name;
        out += suffix;
        if (!labels.empty()) {
            out += '{';
            out += labels;
            out += '}';
        }
        out += ' ';
    };
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        out += name;
        out += "_bucket{";
        if (!labels.empty()) {
            out += labels;
            out += ',';
        }
        out += "le=\"";
        if (i < bounds_.size()) {
            append_us_as_seconds(out, bounds_[i]);
        } else {
            out += "+Inf";
        }
        out += "\"} ";
        out += std::to_string(cumulative);
        out += '\n';
    }
    char sum[48];
    std::snprintf(sum, sizeof sum, "%.6f",
                  static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6);
    with_labels("_sum");
    out += sum;
    out += '\n';
    with_labels("_count");
    // The +Inf bucket must equal _count: print the cumulative sum rendered above.
    out += std::to_string(cumulative);
    out += '\n';
}

void append_sample(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::uint64_t value, std::string_view labels) {
    if (!help.empty()) {
        append_header(out, name, type, help);
    }
    out += name;
    if (!labels.empty()) {
        out += '{';
        out += labels;
        out += '}';
    }
    out += ' ';
    out += std::to_string(value);
    out += '\n';
}

std::size_t registry::cache_class(unsigned status, std::string_view cs) noexcept {
    // The Cache-Status values of gateway/image/impl.hpp (cs_*), most frequent first.
    if (cs == "hit") {
        return 0;
    }
    if (cs.starts_with("fwd=stale")) {
        return 1;
    }
    if (cs.starts_with("fwd=miss; detail=l2")) {
        return 3;
    }
    if (cs.starts_with("fwd=miss") || cs == "collapsed") {
        return 2;
    }
    if (status == 401 || status == 403 || status == 429) {
        return 4;
    }
    if (status >= 400 || cs.starts_with("error") || cs == "client-gone") {
        return 5;
    }
    return 6;
}

void registry::record(std::string_view route, unsigned status, std::chrono::nanoseconds d,
                      std::string_view cache_status) noexcept {
    const auto r = route_index(route);
    requests_[r][status_index(status)].fetch_add(1, std::memory_order_relaxed);
    if (r == 0) {  // routes[0] == "image"
        image_latency_[cache_class(status, cache_status)].observe(d);
    }
}

std::uint64_t registry::requests(std::string_view route, unsigned status) const noexcept {
    return requests_[route_index(route)][status_index(status)].load(std::memory_order_relaxed);
}

void registry::add_source(std::function<void(std::string&)> source) {
    const std::lock_guard lock(mu_);
    sources_.push_back(std::move(source));
}

std::string registry::render() const {
    std::string out;
    out.reserve(8192);
    out +=
        "# HELP imagegate_requests_total Requests answered, by route and HTTP status.\n"
        "# TYPE imagegate_requests_total counter\n";
    for (std::size_t r = 0; r < routes.size(); ++r) {
        for (std::size_t s = 0; s < statuses.size(); ++s) {
            const auto v = requests_[r][s].load(std::memory_order_relaxed);
            if (v == 0) {
                continue;
            }
            std::string labels = "route=\"";
            labels += routes[r];
            labels += "\",status=\"";
            labels += statuses[s] == 0 ? std::string("other") : std::to_string(statuses[s]);
            labels += '"';
            append_sample(out, "imagegate_requests_total", "", "", v, labels);
        }
    }
    // One family, one series per cache class: `sum by (le)` is every image answer.
    for (std::size_t c = 0; c < cache_classes.size(); ++c) {
        std::string label = "cache=\"";
        label += cache_classes[c];
        label += '"';
        image_latency_[c].render(out, "imagegate_image_request_duration_seconds",
                                 c == 0 ? "Time to answer image requests (read of the head to "
                                          "last byte written), by cache status."
                                        : "",
                                 label);
    }
    const std::lock_guard lock(mu_);
    for (const auto& source : sources_) {
        source(out);
    }
    return out;
}

}  // namespace imagegate::metrics
