// The state of one upstream pool (internal to gateway/upstream): its slots, its FIFO of
// waiting acquirers and its idle reaper, shared by the pool handle, leases and in-flight
// tasks. Its members are defined by job: pool.cpp (life cycle, leases, gauges),
// pool_acquire.cpp (acquire and the wait queue), pool_connect.cpp (opening connections
// within the origin's limit), pool_idle.cpp (parking, eviction, the idle reaper, releases).
#pragma once

#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/upstream/pool_slot.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/assert.hpp>

#include <atomic>
#include <deque>
#include <exception>
#include <list>
#include <optional>

namespace imagegate::upstream::detail {

/// Pool state and logic. Shared by the pool, leases and in-flight tasks (each holds a
/// shared_ptr, so posted releases stay valid after the pool handle is gone).
/// Thread-safety: every member function except the constructor, executor(), runs_here() and
/// the stop flag runs on the pool's worker (checked at each entry point): one thread touches
/// the slots, the waiters and the timers, so nothing here takes a lock.
class pool_impl : public std::enable_shared_from_this<pool_impl> {
public:
    pool_impl(asio::any_io_executor ex, std::shared_ptr<const connection_options> conn_opts,
              pool_options opts, std::shared_ptr<upstream::stats> st,
              std::shared_ptr<spdlog::logger> log, std::shared_ptr<connection_limit> limit,
              std::size_t member)
        : ex_(std::move(ex)),
          conn_opts_(std::move(conn_opts)),
          opts_(opts),
          stats_(std::move(st)),
          log_(std::move(log)),
          limit_(limit ? std::move(limit)
                       : std::make_shared<connection_limit>(opts.max_connections, 1)),
          member_(member),
          reaper_(ex_) {
        BOOST_ASSERT(opts_.max_connections > 0);
    }
    ~pool_impl();
    pool_impl(const pool_impl&) = delete;
    pool_impl& operator=(const pool_impl&) = delete;

    /// Installs the hooks through which the origin's other pools reach this one.
    void attach();

    const asio::any_io_executor& executor() const noexcept { return ex_; }
    bool runs_here() const noexcept { return runs_on_this_worker(ex_); }

    /// Set (from any thread) as soon as shutdown is requested.
    bool is_stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
    void request_stop() noexcept { stopping_.store(true, std::memory_order_release); }

    static asio::awaitable<boost::system::result<lease>> acquire_wait(
        std::shared_ptr<pool_impl> self, clock::time_point deadline, acquire_mode mode);

    /// The most recently parked idle connection; nothing when none is idle or the pool is
    /// shutting down.
    std::optional<lease> take_idle();

    void on_release(std::uint64_t id, bool reusable);
    void shutdown();

private:
    struct slot {
        std::uint64_t id = 0;
        slot_state state = slot_state::connecting;
        std::shared_ptr<connection> conn;
        clock::time_point idle_since{};
    };

    /// A queued acquirer. `outcome` is written before `wake` is cancelled, so the acquirer
    /// reads it whichever of its two timers finished first: nothing handed over is lost when
    /// the deadline and the hand-over race.
    struct waiter {
        explicit waiter(const asio::any_io_executor& ex, acquire_mode m)
            : wake(ex, clock::time_point::max()), mode(m) {}
        asio::steady_timer wake;
        acquire_mode mode;
        std::optional<boost::system::result<lease>> outcome;
    };

    void check_here() const noexcept {
        IMAGEGATE_CHECK(runs_here(), "an upstream pool is used only on its own worker");
    }

    slot* find(std::uint64_t id) noexcept;
    slot_facts facts_for(const slot& s) const noexcept;
    std::size_t count(slot_state st) const noexcept;
    void update_gauges() noexcept;

    /// Closes an idle connection that is readable (see connection::is_idle_and_open).
    void discard_unreadable(slot& s);
    bool evict_oldest_idle();
    void open_as_needed();
    void report_short(std::size_t n);
    void start_connect(slot& s);
    void on_connected(std::uint64_t id, std::exception_ptr ep,
                      boost::system::result<void, failure> r);
    void hand_to_first_waiter(slot& s, bool reused);
    void fail_first_waiter(boost::system::error_code ec);
    void close_and_erase(std::uint64_t id);
    void park_or_hand_over(slot& s);
    void on_shed_request();
    void on_room();
    void arm_reaper();
    void on_reap(boost::system::error_code ec);

    asio::any_io_executor ex_;  // the worker's executor: pool, connections and timers
    std::shared_ptr<const connection_options> conn_opts_;
    pool_options opts_;
    std::shared_ptr<upstream::stats> stats_;
    std::shared_ptr<spdlog::logger> log_;
    std::shared_ptr<connection_limit> limit_;  // one unit per slot
    std::size_t member_;                       // this pool's index in limit_

    std::list<slot> slots_;                        // every counted connection
    std::deque<std::shared_ptr<waiter>> waiters_;  // FIFO
    std::size_t pending_connects_ = 0;             // slots in connecting state
    std::uint64_t next_id_ = 1;
    bool shutting_down_ = false;          // the worker's view of the shutdown
    std::atomic<bool> stopping_{false};   // any-thread view, set before the shutdown is posted
    std::size_t reported_short_ = 0;      // last shortfall told to limit_
    bool force_report_ = false;           // limit_ may have changed it (claims)
    std::uint64_t published_in_use_ = 0;  // this pool's share of the stats gauges
    std::uint64_t published_idle_ = 0;
    asio::steady_timer reaper_;  // fires at the earliest idle expiry
    std::optional<clock::time_point> reaper_at_;
};

}  // namespace imagegate::upstream::detail
