#include "gateway/shield/credential_shields.hpp"

#include <stdexcept>

namespace imagegate::shield {

namespace {

void add(upstream_limit_counters& to, const upstream_limit_counters& c) {
    to.upstream_429s += c.upstream_429s;
    to.pauses += c.pauses;
    to.seconds_paused += c.seconds_paused;
    to.invalid_headers += c.invalid_headers;
}

}  // namespace

credential_shields::credential_shields(const credential_shields_options& o)
    : options_(o), idle_after_(std::chrono::duration_cast<duration>(o.budget.window)) {
    if (o.max_credentials == 0) {
        throw std::invalid_argument("credential shields: max_credentials must be positive");
    }
    budget probe(o.budget);  // the same checks every shield's budget makes, once, up front
    (void)probe;
}

void credential_shields::drop_oldest_locked() {
    add(retired_, shields_.oldest()->value->limit.counters());
    shields_.pop_oldest();
}

std::shared_ptr<credential_shield> credential_shields::get(const credential_digest& cred,
                                                           time_point now) {
    const std::lock_guard lock(mu_);
    // Idle sweep from the oldest end; a paused shield stops it (it is kept until its pause
    // ends, and the sweep resumes at a later call).
    while (const auto* n = shields_.oldest()) {
        if (n->digest == cred || now - n->last_used < idle_after_ ||
            n->value->limit.is_paused(now)) {
            break;
        }
        drop_oldest_locked();
    }
    if (shields_.find(cred) == nullptr && shields_.size() >= options_.max_credentials) {
        drop_oldest_locked();
    }
    return shields_
        .touch(
            cred, now,
            [this] { return std::make_shared<credential_shield>(options_.budget, options_.limit); })
        .value;
}

std::size_t credential_shields::size() const {
    const std::lock_guard lock(mu_);
    return shields_.size();
}

std::size_t credential_shields::paused(time_point now) const {
    const std::lock_guard lock(mu_);
    std::size_t n = 0;
    shields_.for_each([&](const auto& node) { n += node.value->limit.is_paused(now) ? 1 : 0; });
    return n;
}

upstream_limit_counters credential_shields::limit_counters() const {
    const std::lock_guard lock(mu_);
    upstream_limit_counters sum = retired_;
    shields_.for_each([&](const auto& node) { add(sum, node.value->limit.counters()); });
    return sum;
}

}  // namespace imagegate::shield
