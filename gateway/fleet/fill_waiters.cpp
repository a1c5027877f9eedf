#include "gateway/fleet/fill_waiters.hpp"

#include <boost/asio/post.hpp>

#include <vector>

namespace imagegate::fleet {

fill_waiters::registration::registration(fill_waiters& owner, std::string key,
                                         const std::shared_ptr<fill_wait>& w)
    : owner_(owner), key_(std::move(key)), w_(w.get()) {
    const std::lock_guard lock(owner_.mu_);
    owner_.waiting_.emplace(key_, slot{w, w->timer.get_executor()});
}

fill_waiters::registration::~registration() {
    const std::lock_guard lock(owner_.mu_);
    auto [it, end] = owner_.waiting_.equal_range(key_);
    for (; it != end; ++it) {
        const auto w = it->second.w.lock();
        if (!w || w.get() == w_) {
            owner_.waiting_.erase(it);
            return;
        }
    }
}

void fill_waiters::notify(std::string_view key) {
    std::vector<slot> wake;
    {
        const std::lock_guard lock(mu_);
        auto [it, end] = waiting_.equal_range(std::string(key));
        for (; it != end; ++it) {
            wake.push_back(it->second);
        }
    }
    for (auto& s : wake) {
        // The waiter's timer is touched only on its own worker; it may be gone by then.
        asio::post(s.ex, [w = std::move(s.w)] {
            if (const auto p = w.lock()) {
                p->fired = true;
                p->timer.cancel();
            }
        });
    }
}

std::size_t fill_waiters::size() const {
    const std::lock_guard lock(mu_);
    return waiting_.size();
}

}  // namespace imagegate::fleet
