#include "gateway/upstream/connection_limit.hpp"

#include "gateway/core/check.hpp"

namespace imagegate::upstream {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
}

connection_limit::connection_limit(std::size_t max, std::size_t members)
    : max_(max),
      short_(std::make_unique<std::atomic<std::size_t>[]>(members)),
      members_(members),
      hooks_(members) {
    IMAGEGATE_CHECK(max > 0 && members > 0, "a connection limit needs room and members");
}

void connection_limit::set_hooks(std::size_t m, hooks h) {
    IMAGEGATE_CHECK(m < members_, "connection limit member out of range");
    const std::lock_guard lock(mu_);
    hooks_[m] = std::move(h);
}

std::size_t connection_limit::try_take(std::size_t n) noexcept {
    std::size_t now = taken_.load(relaxed);
    for (;;) {
        const std::size_t got = std::min(n, max_ > now ? max_ - now : 0);
        if (got == 0 || taken_.compare_exchange_weak(now, now + got, relaxed)) {
            return got;
        }
    }
}

void connection_limit::give_back(std::size_t n) {
    if (n == 0) {
        return;
    }
    const auto before = taken_.fetch_sub(n, relaxed);
    IMAGEGATE_CHECK(before >= n, "connection limit: more units given back than taken");
    if (short_members_.load(relaxed) == 0) {
        return;
    }
    const std::lock_guard lock(mu_);
    for (std::size_t j = 0; j < members_; ++j) {
        if (short_[j].load(relaxed) > 0 && hooks_[j].room) {
            hooks_[j].room();
        }
    }
}

void connection_limit::set_short(std::size_t m, std::size_t n) {
    const std::size_t before = short_[m].exchange(n, relaxed);
    if ((before == 0) != (n == 0)) {
        if (n == 0) {
            short_members_.fetch_sub(1, relaxed);
        } else {
            short_members_.fetch_add(1, relaxed);
        }
    }
    if (n <= before) {
        return;
    }
    const std::lock_guard lock(mu_);
    for (std::size_t j = 0; j < members_; ++j) {
        if (j != m && hooks_[j].shed) {
            hooks_[j].shed();
        }
    }
}

std::optional<std::size_t> connection_limit::claim_for_other(std::size_t m) noexcept {
    if (short_members_.load(relaxed) == 0) {
        return std::nullopt;
    }
    for (std::size_t j = 0; j < members_; ++j) {
        if (j == m) {
            continue;
        }
        std::size_t s = short_[j].load(relaxed);
        while (s > 0) {
            if (short_[j].compare_exchange_weak(s, s - 1, relaxed)) {
                if (s == 1) {
                    short_members_.fetch_sub(1, relaxed);
                }
                return j;
            }
        }
    }
    return std::nullopt;
}

void connection_limit::wake(std::size_t j) {
    const std::lock_guard lock(mu_);
    if (j < members_ && hooks_[j].room) {
        hooks_[j].room();
    }
}

}  // namespace imagegate::upstream
