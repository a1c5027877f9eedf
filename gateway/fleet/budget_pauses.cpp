#include "gateway/fleet/budget_pauses.hpp"

#include <algorithm>

namespace imagegate::fleet {

pause_table::pause_table(std::size_t max_entries)
    : max_entries_(std::max<std::size_t>(1, max_entries)) {}

void pause_table::make_room_locked(shield::time_point now) {
    std::erase_if(pauses_, [now](const auto& kv) { return kv.second.until <= now; });
    if (pauses_.size() < max_entries_) {
        return;
    }
    const auto soonest = std::min_element(
        pauses_.begin(), pauses_.end(),
        [](const auto& a, const auto& b) { return a.second.until < b.second.until; });
    pauses_.erase(soonest);
}

bool pause_table::extend(const std::string& quota, shield::time_point now, shield::time_point until,
                         bool confirmed) {
    const std::lock_guard lock(mu_);
    auto it = pauses_.find(quota);
    if (it == pauses_.end()) {
        if (pauses_.size() >= max_entries_) {
            make_room_locked(now);
        }
        pauses_.emplace(quota, entry{until, confirmed});
        return true;
    }
    if (until <= it->second.until) {
        return false;
    }
    it->second = entry{until, confirmed};
    return true;
}

void pause_table::confirm(const std::string& quota, shield::time_point until) {
    const std::lock_guard lock(mu_);
    if (const auto it = pauses_.find(quota); it != pauses_.end() && it->second.until <= until) {
        it->second.confirmed = true;
    }
}

void pause_table::unconfirm(const std::string& quota, shield::time_point until) {
    const std::lock_guard lock(mu_);
    if (const auto it = pauses_.find(quota); it != pauses_.end() && it->second.until == until) {
        it->second.confirmed = false;
    }
}

std::optional<shield::duration> pause_table::blocked_for(const std::string& quota,
                                                         shield::time_point now) const {
    const std::lock_guard lock(mu_);
    const auto it = pauses_.find(quota);
    if (it == pauses_.end() || it->second.until <= now) {
        return std::nullopt;
    }
    return it->second.until - now;
}

std::vector<pending_pause> pause_table::take_unconfirmed(shield::time_point now) {
    std::vector<pending_pause> out;
    const std::lock_guard lock(mu_);
    for (auto& [quota, e] : pauses_) {
        if (!e.confirmed && e.until > now) {
            e.confirmed = true;  // being written; unconfirm() on failure
            out.push_back({quota, e.until});
        }
    }
    return out;
}

std::size_t pause_table::paused(shield::time_point now) const {
    const std::lock_guard lock(mu_);
    return static_cast<std::size_t>(std::count_if(
        pauses_.begin(), pauses_.end(), [now](const auto& kv) { return kv.second.until > now; }));
}

}  // namespace imagegate::fleet
