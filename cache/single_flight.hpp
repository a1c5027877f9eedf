// Single-flight: at most one fetch per key at a time. The first caller starts the fetch as a
// task of its own (it belongs to the key, not to any client); every caller, the first one
// included, waits for the result with its own deadline and is woken the moment it exists.
// A fetch whose callers all left learns it, so it can stop before spending anything.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace imagegate::cache {

template <class Key, class Value, class Hash>
class single_flight;

/// One fetch in progress and the callers waiting for it.
///
/// Members: every caller that joined (single_flight::join) is a member until it got the result
/// or left (`wait` ending without one, or `leave`). When the last member leaves before the
/// result, the `on_empty` hook runs: the fetch may then give up (single_flight::try_abandon).
/// Thread-safety: all members are guarded by `mu_`; waiters' timers are touched only on
/// their own executors (see `wait`); the hook runs on the thread of the leaving member.
template <class Value>
class flight {
public:
    /// Waits for the result until `deadline`, or until the waiting coroutine is cancelled
    /// (its client hung up). Must be called from a coroutine running on a serial executor, one
    /// whose handlers never run concurrently (in the gateway: an I/O worker's, an io_context
    /// run by one thread; gateway/image/ checks it): the wake-up runs on that executor, so it
    /// cannot run between registering and suspending. Returns nothing on timeout or
    /// cancellation; the caller has then left the flight.
    boost::asio::awaitable<std::optional<Value>> wait(
        std::chrono::steady_clock::time_point deadline) {
        auto ex = co_await boost::asio::this_coro::executor;
        auto timer = std::make_shared<boost::asio::steady_timer>(ex, deadline);
        {
            const std::lock_guard lock(mu_);
            if (result_) {
                co_return result_;
            }
            waiters_.push_back(waiter{ex, timer});
        }
        auto [ec] = co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        (void)ec;  // cancelled (woken or hung up) or expired: the result slot decides
        std::optional<Value> got;
        {
            const std::lock_guard lock(mu_);
            got = result_;
        }
        if (!got) {
            leave();
        }
        co_return got;
    }

    /// A member that will not wait (or stops waiting) leaves; the last one runs `on_empty`.
    void leave() {
        std::function<void()> hook;
        {
            const std::lock_guard lock(mu_);
            if (members_ == 0 || --members_ != 0 || result_ || abandoned_) {
                return;
            }
            hook = on_empty_;
        }
        if (hook) {
            hook();
        }
    }

    /// Sets what runs when the last member leaves before the result (any thread; it must be
    /// cheap and must not call back into the flight). Runs at once if no member is left.
    void on_empty(std::function<void()> hook) {
        bool now = false;
        {
            const std::lock_guard lock(mu_);
            on_empty_ = hook;
            now = members_ == 0 && !result_ && !abandoned_;
        }
        if (now && hook) {
            hook();
        }
    }

    /// Members that have not left (for the fetch's last look before it spends a token).
    std::size_t members() const {
        const std::lock_guard lock(mu_);
        return members_;
    }

    /// Stores the result and wakes every waiter on its own executor.
    void complete(Value v) {
        std::vector<waiter> woken;
        {
            const std::lock_guard lock(mu_);
            result_ = std::move(v);
            woken.swap(waiters_);
            on_empty_ = nullptr;  // may own the fetch's reservation state
        }
        // dispatch: inline when this thread already runs the waiter's executor (the waiter is
        // on the completing fetch's worker, so it cannot be between registering and
        // suspending), else posted to the waiter's worker. Either way the cancellation runs
        // on the waiter's executor and its timer handler is queued there, never run inline:
        // no handler of one worker runs on another's thread.
        for (auto& w : woken) {
            boost::asio::dispatch(w.ex, [t = std::move(w.timer)] { t->cancel(); });
        }
    }

    bool is_done() const {
        const std::lock_guard lock(mu_);
        return result_.has_value() || abandoned_;
    }

private:
    template <class K, class V, class H>
    friend class single_flight;

    struct waiter {
        boost::asio::any_io_executor ex;
        std::shared_ptr<boost::asio::steady_timer> timer;
    };
    mutable std::mutex mu_;
    std::optional<Value> result_;     // guarded by mu_
    std::vector<waiter> waiters_;     // guarded by mu_
    std::size_t members_ = 0;         // guarded by mu_
    bool abandoned_ = false;          // guarded by mu_
    std::function<void()> on_empty_;  // guarded by mu_
};

/// The registry of flights by key. Results are delivered to the callers waiting at the
/// time and never remembered: the flight leaves the map before its waiters are woken, so a
/// request after completion goes to the cache or starts a new flight.
/// Thread-safety: all members may be called from any thread.
template <class Key, class Value, class Hash = std::hash<Key>>
class single_flight {
public:
    using flight_ptr = std::shared_ptr<flight<Value>>;

    /// Joins the flight for `k`, creating it if none runs. `leader` is true for the caller
    /// that created it: that caller must start the fetch and end it with `finish`.
    struct joined {
        flight_ptr f;
        bool leader = false;
    };

    /// Joins the flight for `k` as a member (see flight), creating it if none runs.
    joined join(const Key& k) {
        const std::lock_guard lock(mu_);
        auto [it, inserted] = flights_.try_emplace(k);
        if (inserted) {
            it->second = std::make_shared<flight<Value>>();
        }
        {
            // Under the map lock: try_abandon cannot see zero members while a joiner holds f.
            const std::lock_guard flock(it->second->mu_);
            ++it->second->members_;
        }
        return {it->second, inserted};
    }

    /// Ends flight `f` of `k` without a result if it has no members left (nobody waits for
    /// it and nobody can join it any more); false if someone joined since it became empty.
    bool try_abandon(const Key& k, const flight_ptr& f) {
        const std::lock_guard lock(mu_);
        const std::lock_guard flock(f->mu_);
        if (f->members_ != 0 || f->result_) {
            return false;
        }
        f->abandoned_ = true;
        f->on_empty_ = nullptr;
        const auto it = flights_.find(k);
        if (it != flights_.end() && it->second == f) {
            flights_.erase(it);
        }
        return true;
    }

    /// Removes the flight of `k` (if it is still `f`), then wakes its waiters with `v`.
    void finish(const Key& k, const flight_ptr& f, Value v) {
        {
            const std::lock_guard lock(mu_);
            const auto it = flights_.find(k);
            if (it != flights_.end() && it->second == f) {
                flights_.erase(it);
            }
        }
        f->complete(std::move(v));
    }

    std::size_t in_flight() const {
        const std::lock_guard lock(mu_);
        return flights_.size();
    }

private:
    mutable std::mutex mu_;
    std::unordered_map<Key, flight_ptr, Hash> flights_;  // guarded by mu_
};

}  // namespace imagegate::cache
