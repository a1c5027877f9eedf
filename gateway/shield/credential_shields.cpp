#include "gateway/shield/credential_shields.hpp"

#include <algorithm>
#include <stdexcept>

namespace imagegate::shield {

namespace {

void add(upstream_limit_counters& to, const upstream_limit_counters& c) {
    to.upstream_429s += c.upstream_429s;
    to.pauses += c.pauses;
    to.seconds_paused += c.seconds_paused;
    to.invalid_headers += c.invalid_headers;
}

/// When `s` may be forgotten at the earliest, if nobody uses it meanwhile. A shield someone
/// holds gives no instant: its holder may still take tokens; look again a second later.
time_point droppable_at(const std::shared_ptr<credential_shield>& s, time_point now) {
    if (s.use_count() > 1) {
        return now + std::chrono::seconds(1);
    }
    const time_point paused_until = now + s->limit.blocked_for(now).value_or(duration::zero());
    return std::max({s->budget.full_at(), paused_until, now});
}

}  // namespace

credential_shields::credential_shields(const credential_shields_options& o)
    : options_(o),
      unproven_limit_(
          std::max<std::size_t>(1, o.max_credentials / 100 * o.unproven_share_percent +
                                       o.max_credentials % 100 * o.unproven_share_percent / 100)),
      budget_(o.budget) {
    if (o.max_credentials == 0) {
        throw std::invalid_argument("credential shields: max_credentials must be positive");
    }
    if (o.unproven_share_percent == 0 || o.unproven_share_percent > 100) {
        throw std::invalid_argument("credential shields: unproven share must be 1-100%");
    }
    budget probe(o.budget);  // the same checks every shield's budget makes, once, up front
    (void)probe;
}

bool credential_shields::must_keep(const std::shared_ptr<credential_shield>& s, time_point now) {
    // use_count: the table's own reference plus any fetch or reservation holding it.
    return s.use_count() > 1 || s->limit.is_paused(now) || s->budget.full_at() > now;
}

void credential_shields::drop_locked(const lru::node& n) {
    add(retired_, n.value->limit.counters());
    const credential_digest d = n.digest;
    shields_.erase(d);
}

bool credential_shields::drop_one_locked(time_point now) {
    if (now < no_drop_before_) {
        return false;
    }
    const lru::node* victim = nullptr;
    time_point earliest = time_point::max();
    shields_.for_each([&](const lru::node& n) {
        if (victim != nullptr) {
            return;
        }
        if (!must_keep(n.value, now)) {
            victim = &n;
        } else {
            earliest = std::min(earliest, droppable_at(n.value, now));
        }
    });
    if (victim == nullptr) {
        no_drop_before_ = earliest;
        return false;
    }
    drop_locked(*victim);
    return true;
}

std::shared_ptr<credential_shield> credential_shields::find(const credential_digest& cred,
                                                            time_point now) {
    const std::lock_guard lock(mu_);
    auto* n = shields_.find(cred);
    if (n == nullptr) {
        return nullptr;
    }
    return shields_.touch(cred, now, [] { return std::shared_ptr<credential_shield>(); }).value;
}

void credential_shields::resize(const budget_options& b, time_point now) {
    budget probe(b);  // throws before anything changes
    (void)probe;
    const std::lock_guard lock(mu_);
    budget_ = b;
    shields_.for_each([&](const lru::node& n) {
        if (n.value) {
            n.value->budget.resize(b, now);
        }
    });
}

shield_lookup credential_shields::get(const credential_digest& cred, time_point now, bool proven) {
    const std::lock_guard lock(mu_);
    if (shields_.find(cred) == nullptr) {
        // Forget one idle shield per call (a bucket full and unused for a whole window): the
        // table shrinks back after a burst of credentials without a scan.
        if (const auto* oldest = shields_.oldest(); oldest != nullptr &&
                                                    now - oldest->last_used >= budget_.window &&
                                                    !must_keep(oldest->value, now)) {
            drop_locked(*oldest);
        }
        const std::size_t limit = proven ? options_.max_credentials : unproven_limit_;
        if (shields_.size() >= limit && !drop_one_locked(now)) {
            return {.shield = nullptr, .retry_at = std::max(no_drop_before_, now)};
        }
        no_drop_before_ = time_point::min();  // the newcomer may be droppable soon: look again
    }
    auto& node = shields_.touch(cred, now, [&] {
        auto s = std::make_shared<credential_shield>(budget_, options_.limit);
        if (start_empty_) {
            s->budget.drain(now);
        }
        return s;
    });
    return {.shield = node.value, .retry_at = now};
}

void credential_shields::start_empty(bool on, time_point now) {
    const std::lock_guard lock(mu_);
    start_empty_ = on;
    if (on) {
        shields_.for_each([&](const auto& node) { node.value->budget.drain(now); });
    }
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
