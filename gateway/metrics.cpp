#include "gateway/metrics.hpp"

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

void append_double(std::string& out, double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    out += buf;
}

}  // namespace

void histogram::observe(std::chrono::nanoseconds d) noexcept {
    const double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < bounds.size() && s > bounds[i]) {
        ++i;
    }
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<std::uint64_t>(d.count()), std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
}

void histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        out += name;
        out += "_bucket{";
        out += labels;
        out += "le=\"";
        if (i < bounds.size()) {
            append_double(out, bounds[i]);
        } else {
            out += "+Inf";
        }
        out += "\"} ";
        out += std::to_string(cumulative);
        out += '\n';
    }
    out += name;
    out += "_sum ";
    append_double(out, static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
    out += '\n';
    out += name;
    out += "_count ";
    out += std::to_string(count_.load(std::memory_order_relaxed));
    out += '\n';
}

void append_sample(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::uint64_t value, std::string_view labels) {
    if (!help.empty()) {
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

void registry::record(std::string_view route, unsigned status,
                      std::chrono::nanoseconds d) noexcept {
    const auto r = route_index(route);
    requests_[r][status_index(status)].fetch_add(1, std::memory_order_relaxed);
    if (routes[r] == "image") {
        image_latency_.observe(d);
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
    out += "# HELP imagegate_requests_total Requests answered, by route and HTTP status.\n"
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
    out += "# HELP imagegate_image_request_duration_seconds Time to answer image requests.\n"
           "# TYPE imagegate_image_request_duration_seconds histogram\n";
    image_latency_.render(out, "imagegate_image_request_duration_seconds", "");
    const std::lock_guard lock(mu_);
    for (const auto& source : sources_) {
        source(out);
    }
    return out;
}

}  // namespace imagegate::metrics
