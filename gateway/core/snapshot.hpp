// An immutable value that one thread replaces whole and many threads read: the way settings
// that a configuration reload changes reach the request threads.
#pragma once

#include <memory>
#include <mutex>
#include <utility>

namespace imagegate {

/// Holds a std::shared_ptr<const T>. load() hands out the current value, which stays valid
/// (and unchanged: T is const) for as long as the caller keeps it, whatever store() does
/// meanwhile. The pointer is copied under a mutex held for that copy only, not a
/// std::atomic<std::shared_ptr>: libstdc++ 12's lock-bit implementation of the latter
/// unlocks with relaxed order after a load, which ThreadSanitizer reports as a race with the
/// next store. Owned by the component whose setting it holds. Thread-safety: every member
/// from any thread.
template <class T>
class snapshot {
public:
    explicit snapshot(std::shared_ptr<const T> value) : value_(std::move(value)) {}
    snapshot(const snapshot&) = delete;
    snapshot& operator=(const snapshot&) = delete;

    std::shared_ptr<const T> load() const {
        const std::lock_guard lock(mu_);
        return value_;
    }
    /// Publishes `value`; the previous one is released outside the lock.
    void store(std::shared_ptr<const T> value) {
        {
            const std::lock_guard lock(mu_);
            value_.swap(value);
        }
    }

private:
    mutable std::mutex mu_;
    std::shared_ptr<const T> value_;  // guarded by mu_
};

}  // namespace imagegate
