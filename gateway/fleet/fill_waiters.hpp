// Who waits for which key's "filled" event: requests that lost a fill lease park here and
// are woken (on their own worker) when the event arrives, instead of polling alone.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace imagegate::fleet {

/// One waiting request: its timer (the poll interval) and whether it was notified. Owned by
/// the waiting coroutine; touched only on its executor.
struct fill_wait {
    explicit fill_wait(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    bool fired = false;
};

/// Owned by the L2 cache. Thread-safety: every member from any thread (one mutex around the
/// map; wake-ups are posted to each waiter's executor).
class fill_waiters {
public:
    /// Registers `w` under `key` until the returned handle is destroyed (on w's executor).
    class registration {
    public:
        registration(fill_waiters& owner, std::string key, const std::shared_ptr<fill_wait>& w);
        ~registration();
        registration(const registration&) = delete;
        registration& operator=(const registration&) = delete;

    private:
        fill_waiters& owner_;
        std::string key_;
        const fill_wait* w_;
    };

    /// Wakes every waiter of `key` (on its executor): fired = true, timer cancelled.
    void notify(std::string_view key);
    std::size_t size() const;

private:
    struct slot {
        std::weak_ptr<fill_wait> w;
        asio::any_io_executor ex;
    };
    mutable std::mutex mu_;
    std::unordered_multimap<std::string, slot> waiting_;
};

}  // namespace imagegate::fleet
