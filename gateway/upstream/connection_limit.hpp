// The per-origin connection limit shared by the upstream pools of one client (one pool per
// I/O worker): one count of open connections against upstream.max_connections, and the
// hand-over of room from pools that keep idle connections to a pool whose waiters need it.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace imagegate::upstream {

/// Every connection a member pool counts (connecting, idle, in use, closing) holds one unit;
/// the units taken never exceed `max`. A member whose waiters need more connections than it
/// could take reports its shortfall (set_short); the other members then give back idle
/// connections for it (claim_for_other when they would keep one, and when asked through
/// their `shed` hook), and it is woken (its `room` hook) when units come back.
///
/// Why shared rather than split (max / members each): a client's keep-alive connection
/// lands on one worker, and a sidecar may have a single busy client; a fixed share would cap
/// it at max / workers connections while the others idle. The price is this hand-over, which
/// only runs while the limit is reached.
///
/// Owned by the client (shared with its pools). Thread-safety: every member may be called
/// from any thread; hooks are called from any thread, under an internal lock, and must only
/// post work to their pool's worker.
class connection_limit {
public:
    struct hooks {
        /// Give back idle connections for members that are short (claim_for_other).
        std::function<void()> shed;
        /// Units came back: open what the waiters still need.
        std::function<void()> room;
    };

    /// `max` units (at least 1) shared by `members` pools, indexed 0..members-1.
    connection_limit(std::size_t max, std::size_t members);
    connection_limit(const connection_limit&) = delete;
    connection_limit& operator=(const connection_limit&) = delete;

    std::size_t max() const noexcept { return max_; }
    /// Units taken now.
    std::size_t taken() const noexcept { return taken_.load(std::memory_order_relaxed); }

    /// Installs (or, with empty functions, removes) member `m`'s hooks.
    void set_hooks(std::size_t m, hooks h);

    /// Takes up to `n` units; returns how many it took.
    std::size_t try_take(std::size_t n) noexcept;
    /// Returns `n` units and wakes the members that are short.
    void give_back(std::size_t n);

    /// Member `m` needs `n` more units than it could take (0: it has all it needs). A rise
    /// asks every other member to shed idle connections.
    void set_short(std::size_t m, std::size_t n);
    /// For member `m`, about to keep an idle connection: takes one unit of another member's
    /// shortfall and returns that member, which `m` must then give the unit to (close the
    /// connection, give_back, wake(j)). Nothing when no other member is short (one relaxed
    /// load: this sits on the release path of every upstream exchange).
    std::optional<std::size_t> claim_for_other(std::size_t m) noexcept;
    /// Calls member `j`'s room hook.
    void wake(std::size_t j);

private:
    const std::size_t max_;
    std::atomic<std::size_t> taken_{0};
    // Members with a shortfall above zero: the cheap "is anyone short" test.
    std::atomic<std::size_t> short_members_{0};
    std::unique_ptr<std::atomic<std::size_t>[]> short_;  // per member
    const std::size_t members_;
    std::mutex mu_;
    std::vector<hooks> hooks_;  // guarded by mu_
};

}  // namespace imagegate::upstream
