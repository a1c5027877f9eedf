#include "gateway/upstream/pool.hpp"

#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/upstream/pool_slot.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/assert.hpp>

#include <spdlog/logger.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <exception>
#include <list>
#include <optional>
#include <vector>

namespace imagegate::upstream {

using namespace asio::experimental::awaitable_operators;

namespace detail {

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

pool_impl::~pool_impl() {
    limit_->set_hooks(member_, {});
    limit_->set_short(member_, 0);
    limit_->give_back(slots_.size());
    stats_->in_use.fetch_sub(published_in_use_, std::memory_order_relaxed);
    stats_->idle.fetch_sub(published_idle_, std::memory_order_relaxed);
}

void pool_impl::attach() {
    // The hooks run on other workers' threads (under the limit's lock): they only post.
    const std::weak_ptr<pool_impl> weak = weak_from_this();
    connection_limit::hooks h;
    h.shed = [weak, ex = ex_] {
        asio::post(ex, [weak] {
            if (auto self = weak.lock()) {
                self->on_shed_request();
            }
        });
    };
    h.room = [weak, ex = ex_] {
        asio::post(ex, [weak] {
            if (auto self = weak.lock()) {
                self->on_room();
            }
        });
    };
    limit_->set_hooks(member_, std::move(h));
}

pool_impl::slot* pool_impl::find(std::uint64_t id) noexcept {
    auto it =
        std::find_if(slots_.begin(), slots_.end(), [id](const slot& s) { return s.id == id; });
    return it == slots_.end() ? nullptr : &*it;
}

slot_facts pool_impl::facts_for(const slot& s) const noexcept {
    return {.requests_served = s.conn->requests_served(),
            .waiters = waiters_.size(),
            .first_waiter_wants_fresh =
                !waiters_.empty() && waiters_.front()->mode == acquire_mode::fresh};
}

std::size_t pool_impl::count(slot_state st) const noexcept {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(), [st](const slot& s) { return s.state == st; }));
}

void pool_impl::update_gauges() noexcept {
    // The gauges sum every pool of the client: each adds the change of its own counts.
    const std::uint64_t in_use = count(slot_state::in_use);
    const std::uint64_t idle = count(slot_state::idle);
    stats_->in_use.fetch_add(in_use - published_in_use_, std::memory_order_relaxed);
    stats_->idle.fetch_add(idle - published_idle_, std::memory_order_relaxed);
    published_in_use_ = in_use;
    published_idle_ = idle;
}

std::optional<lease> pool_impl::take_idle() {
    if (shutting_down_) {
        return std::nullopt;
    }
    slot* best = nullptr;
    for (;;) {
        // Most recently parked first: it is the least likely to have been closed by the
        // peer, and the oldest ones age out through the reaper.
        best = nullptr;
        for (auto& s : slots_) {
            if (s.state == slot_state::idle &&
                (best == nullptr || s.idle_since >= best->idle_since)) {
                best = &s;
            }
        }
        if (best == nullptr) {
            return std::nullopt;
        }
        if (best->conn->is_idle_and_open()) {
            break;
        }
        // Bytes on an idle connection answer no request of ours (or are the peer's close):
        // read as the next request's answer they would cross answers. Discard, try the next.
        discard_unreadable(*best);
    }
    const auto t = transition(best->state, slot_event::acquired, facts_for(*best),
                              {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action == slot_action::lend);
    best->state = t.next;
    update_gauges();
    return lease(shared_from_this(), best->conn, best->id, true);
}

void pool_impl::discard_unreadable(slot& s) {
    const auto t =
        transition(s.state, slot_event::evicted, facts_for(s), {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action == slot_action::close);
    (void)t;  // only checked in debug builds
    stats_->unread_discards.fetch_add(1, std::memory_order_relaxed);
    close_and_erase(s.id);
    update_gauges();
}

bool pool_impl::evict_oldest_idle() {
    slot* oldest = nullptr;
    for (auto& s : slots_) {
        if (s.state == slot_state::idle &&
            (oldest == nullptr || s.idle_since < oldest->idle_since)) {
            oldest = &s;
        }
    }
    if (oldest == nullptr) {
        return false;
    }
    const auto t = transition(oldest->state, slot_event::evicted, facts_for(*oldest),
                              {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action == slot_action::close);
    (void)t;  // only checked in debug builds
    close_and_erase(oldest->id);
    return true;
}

void pool_impl::open_as_needed() {
    if (shutting_down_) {
        report_short(0);
        return;
    }
    const auto n =
        connections_to_open({limit_->max()}, slots_.size(), pending_connects_, waiters_.size());
    const auto got = n == 0 ? 0 : limit_->try_take(n);
    for (std::size_t i = 0; i < got; ++i) {
        auto& s = slots_.emplace_back();
        s.id = next_id_++;
        s.state = slot_state::connecting;
        s.conn = std::make_shared<connection>(ex_, conn_opts_);
        ++pending_connects_;
        start_connect(s);
    }
    // The origin's limit is reached: the other pools hand idle connections over (see
    // connection_limit).
    report_short(n - got);
}

void pool_impl::report_short(std::size_t n) {
    if (n != reported_short_ || force_report_) {
        reported_short_ = n;
        force_report_ = false;
        limit_->set_short(member_, n);
    }
}

void pool_impl::start_connect(slot& s) {
    // The connect task is owned by the slot (which stays counted until the task reports) and
    // runs on this worker; its completion handler runs here too. An exception, if any, is
    // logged and counted as a failed connect.
    auto conn = s.conn;
    const auto deadline = clock::now() + opts_.connect_timeout;
    asio::co_spawn(ex_, conn->connect(deadline),
                   [self = shared_from_this(), id = s.id, conn](
                       std::exception_ptr ep, boost::system::result<void, failure> r) {
                       self->on_connected(id, ep, std::move(r));
                   });
}

void pool_impl::on_connected(std::uint64_t id, std::exception_ptr ep,
                             boost::system::result<void, failure> r) {
    check_here();
    --pending_connects_;
    slot* s = find(id);
    BOOST_ASSERT(s != nullptr);
    if (s == nullptr) {
        return;
    }
    if (ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            if (log_) {
                log_->error("upstream connect task threw: {}", e.what());
            }
        } catch (...) {
            if (log_) {
                log_->error("upstream connect task threw a non-standard exception");
            }
        }
        r = failure{make_error_code(errc::internal_error), phase::connect, false};
    }
    const bool ok = r.has_value();
    const auto t =
        transition(s->state, ok ? slot_event::connect_succeeded : slot_event::connect_failed,
                   facts_for(*s), {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action != slot_action::invalid);
    if (ok) {
        stats_->connects.fetch_add(1, std::memory_order_relaxed);
        if (s->conn->resumed()) {
            stats_->tls_resumptions.fetch_add(1, std::memory_order_relaxed);
        }
    }
    switch (t.action) {
    case slot_action::hand_to_waiter:
        s->state = t.next;
        hand_to_first_waiter(*s, false);
        break;
    case slot_action::park: park_or_hand_over(*s); break;
    case slot_action::close: {
        close_and_erase(id);
        if (!ok && !shutting_down_) {
            const auto& f = r.error();
            const errc e = classify(f);
            stats_->count_error(e);
            // Logged here, once: this is the only layer that sees the phase and the lower
            // layer's code of a connect failure. The client logs only the errc it returns.
            if (log_) {
                log_->warn(
                    "upstream connect failed: host={} port={} phase={} category={} "
                    "value={} message={}",
                    conn_opts_->host, conn_opts_->port, to_string(f.phase), f.ec.category().name(),
                    f.ec.value(), f.ec.message());
            }
            // One connect was opened per waiter; its failure answers exactly one of them, so
            // a dead upstream cannot loop connects faster than requests arrive.
            fail_first_waiter(make_error_code(e));
        }
        break;
    }
    default: break;
    }
    update_gauges();
    open_as_needed();
}

void pool_impl::hand_to_first_waiter(slot& s, bool reused) {
    BOOST_ASSERT(!waiters_.empty());
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    w->outcome.emplace(lease(shared_from_this(), s.conn, s.id, reused));
    w->wake.cancel();
}

void pool_impl::fail_first_waiter(boost::system::error_code ec) {
    if (waiters_.empty()) {
        return;
    }
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    w->outcome.emplace(ec);
    w->wake.cancel();
}

void pool_impl::close_and_erase(std::uint64_t id) {
    auto it =
        std::find_if(slots_.begin(), slots_.end(), [id](const slot& s) { return s.id == id; });
    if (it == slots_.end()) {
        return;
    }
    // On the connection's worker (this one), and nobody else owns the stream any more; a
    // connect or exchange still suspended on it (shutdown) fails with operation_aborted.
    it->conn->close();
    slots_.erase(it);
    limit_->give_back(1);
}

// A connection with nobody waiting for it here: parked, unless another pool of the origin
// is short of room, which then gets the unit instead (the connection is closed).
void pool_impl::park_or_hand_over(slot& s) {
    s.state = slot_state::idle;
    if (const auto other = limit_->claim_for_other(member_)) {
        const auto t = transition(s.state, slot_event::evicted, facts_for(s),
                                  {opts_.max_requests_per_connection});
        BOOST_ASSERT(t.action == slot_action::close);
        (void)t;
        close_and_erase(s.id);
        limit_->wake(*other);
        return;
    }
    s.idle_since = clock::now();
    arm_reaper();
}

// Another pool of the origin is short of room: give it our idle connections' units.
void pool_impl::on_shed_request() {
    check_here();
    if (shutting_down_) {
        return;
    }
    while (count(slot_state::idle) > 0) {
        const auto other = limit_->claim_for_other(member_);
        if (!other) {
            break;
        }
        evict_oldest_idle();
        limit_->wake(*other);
    }
    update_gauges();
}

// Units came back to the origin's limit while this pool was short: take them now.
void pool_impl::on_room() {
    check_here();
    // Other pools' claims lowered the shortfall the limit holds for us; say it again.
    force_report_ = true;
    open_as_needed();
}

void pool_impl::arm_reaper() {
    if (shutting_down_) {
        return;
    }
    std::optional<clock::time_point> earliest;
    for (const auto& s : slots_) {
        if (s.state == slot_state::idle) {
            const auto at = s.idle_since + opts_.idle_timeout;
            if (!earliest || at < *earliest) {
                earliest = at;
            }
        }
    }
    if (!earliest || (reaper_at_ && *reaper_at_ <= *earliest)) {
        return;
    }
    reaper_at_ = earliest;
    reaper_.expires_at(*earliest);
    reaper_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
        if (auto self = weak.lock()) {
            self->on_reap(ec);
        }
    });
}

void pool_impl::on_reap(boost::system::error_code ec) {
    // A cancelled wait means the reaper was re-armed earlier (or the pool shut down); the
    // newer wait owns reaper_at_.
    if (ec == asio::error::operation_aborted) {
        return;
    }
    check_here();
    reaper_at_.reset();
    const auto now = clock::now();
    std::vector<std::uint64_t> expired;
    for (auto& s : slots_) {
        if (s.state == slot_state::idle && s.idle_since + opts_.idle_timeout <= now) {
            expired.push_back(s.id);
        }
    }
    for (const auto id : expired) {
        slot* s = find(id);
        const auto t = transition(s->state, slot_event::idle_expired, facts_for(*s),
                                  {opts_.max_requests_per_connection});
        BOOST_ASSERT(t.action == slot_action::close);
        (void)t;
        close_and_erase(id);
        stats_->idle_closes.fetch_add(1, std::memory_order_relaxed);
    }
    update_gauges();
    arm_reaper();
    open_as_needed();
}

void pool_impl::on_release(std::uint64_t id, bool reusable) {
    check_here();
    slot* s = find(id);
    BOOST_ASSERT(s != nullptr);
    if (s == nullptr) {
        return;
    }
    const slot_limits limits{opts_.max_requests_per_connection};
    const auto facts = facts_for(*s);
    const auto t =
        transition(s->state, reusable ? slot_event::released_reusable : slot_event::released_broken,
                   facts, limits);
    BOOST_ASSERT(t.action != slot_action::invalid);
    switch (t.action) {
    case slot_action::hand_to_waiter:
        s->state = t.next;
        hand_to_first_waiter(*s, true);
        break;
    case slot_action::park: park_or_hand_over(*s); break;
    case slot_action::close:
        if (reusable && s->state == slot_state::in_use && limits.max_requests_per_connection != 0 &&
            facts.requests_served >= limits.max_requests_per_connection) {
            stats_->retired.fetch_add(1, std::memory_order_relaxed);
        }
        close_and_erase(id);
        break;
    default: break;
    }
    update_gauges();
    open_as_needed();
}

void pool_impl::shutdown() {
    check_here();
    if (shutting_down_) {
        return;
    }
    shutting_down_ = true;
    reaper_.cancel();
    reaper_at_.reset();
    while (!waiters_.empty()) {
        fail_first_waiter(make_error_code(errc::shutting_down));
    }
    std::vector<std::uint64_t> to_close;
    for (auto& s : slots_) {
        const auto t = transition(s.state, slot_event::shutdown, facts_for(s),
                                  {opts_.max_requests_per_connection});
        s.state = t.next;
        if (t.action == slot_action::close) {
            to_close.push_back(s.id);
        } else if (t.action == slot_action::abort) {
            // The connect task or lease holder owns the slot until it reports; closing the
            // stream makes its pending step fail with operation_aborted.
            s.conn->close();
        }
    }
    for (const auto id : to_close) {
        close_and_erase(id);
    }
    update_gauges();
    report_short(0);
}

asio::awaitable<boost::system::result<lease>> pool_impl::acquire_wait(
    std::shared_ptr<pool_impl> self, clock::time_point deadline, acquire_mode mode) {
    deadline = std::min(deadline, clock::now() + self->opts_.acquire_timeout);
    if (self->shutting_down_) {
        co_return make_error_code(errc::shutting_down);
    }
    if (mode == acquire_mode::any) {
        auto idle = self->take_idle();
        if (idle) {
            co_return std::move(*idle);
        }
    } else if (self->limit_->taken() >= self->limit_->max()) {
        // A retry must not queue behind connections that are probably as stale as the one
        // that just failed: make room for a new one.
        self->evict_oldest_idle();
    }

    auto w = std::make_shared<waiter>(self->ex_, mode);
    self->stats_->acquire_waits.fetch_add(1, std::memory_order_relaxed);
    self->waiters_.push_back(w);
    self->open_as_needed();

    asio::steady_timer timer(self->ex_, deadline);
    auto fired = co_await (w->wake.async_wait(use_nothrow) || timer.async_wait(use_nothrow));
    (void)fired;
    if (w->outcome) {
        co_return std::move(*w->outcome);
    }
    // Waited out (or this coroutine was cancelled): leave the queue.
    auto& q = self->waiters_;
    q.erase(std::remove(q.begin(), q.end(), w), q.end());
    self->stats_->acquire_timeouts.fetch_add(1, std::memory_order_relaxed);
    self->open_as_needed();  // one waiter less: the shortfall told to the limit shrinks
    if (self->shutting_down_) {
        co_return make_error_code(errc::shutting_down);
    }
    // Nothing was lent and nothing can come back except from connects that are still
    // running: the wait was for the upstream to answer a connect, not for a busy pool.
    if (self->count(slot_state::in_use) == 0 && self->pending_connects_ > 0) {
        self->stats_->timeouts.fetch_add(1, std::memory_order_relaxed);
        co_return make_error_code(errc::upstream_timeout);
    }
    co_return make_error_code(errc::pool_exhausted);
}

}  // namespace detail

lease::lease(std::shared_ptr<detail::pool_impl> pool, std::shared_ptr<connection> conn,
             std::uint64_t slot_id, bool reused) noexcept
    : pool_(std::move(pool)), conn_(std::move(conn)), slot_id_(slot_id), reused_(reused) {}

lease::lease(lease&& other) noexcept
    : pool_(std::move(other.pool_)),
      conn_(std::move(other.conn_)),
      slot_id_(other.slot_id_),
      reused_(other.reused_),
      reusable_(other.reusable_) {}

lease& lease::operator=(lease&& other) noexcept {
    if (this != &other) {
        release();
        pool_ = std::move(other.pool_);
        conn_ = std::move(other.conn_);
        slot_id_ = other.slot_id_;
        reused_ = other.reused_;
        reusable_ = other.reusable_;
    }
    return *this;
}

lease::~lease() { release(); }

void lease::release() noexcept {
    if (!pool_) {
        return;
    }
    // The lease holder has finished its I/O (exchange returned), so the connection's
    // verdict is final.
    const bool reusable = reusable_ && conn_->is_reusable();
    conn_.reset();
    auto pool = std::move(pool_);
    try {
        if (pool->runs_here()) {
            // The usual case: the fetch ends on the pool's worker. No trip through the queue.
            pool->on_release(slot_id_, reusable);
            return;
        }
        const auto& ex = pool->executor();
        asio::post(ex, [pool = std::move(pool), id = slot_id_, reusable]() {
            pool->on_release(id, reusable);
        });
    } catch (...) {
        // Allocation failed: without the release the slot would stay in_use forever,
        // shrinking the pool silently. There is no state we can continue from.
        std::abort();
    }
}

pool::pool(asio::any_io_executor ex, std::shared_ptr<const connection_options> conn_opts,
           pool_options opts, std::shared_ptr<upstream::stats> st,
           std::shared_ptr<spdlog::logger> log, std::shared_ptr<connection_limit> limit,
           std::size_t member)
    : impl_(std::make_shared<detail::pool_impl>(std::move(ex), std::move(conn_opts), opts,
                                                std::move(st), std::move(log), std::move(limit),
                                                member)) {
    impl_->attach();
}

pool::~pool() { shutdown(); }

asio::awaitable<boost::system::result<lease>> pool::acquire(clock::time_point deadline,
                                                            acquire_mode mode) {
    IMAGEGATE_CHECK(impl_->runs_here(), "an upstream pool is used only on its own worker");
    // The common case, an idle connection, is lent right here.
    if (mode == acquire_mode::any) {
        if (auto idle = impl_->take_idle()) {
            co_return std::move(*idle);
        }
    }
    auto r = co_await detail::pool_impl::acquire_wait(impl_, deadline, mode);
    co_return r;
}

bool pool::runs_here() const noexcept { return impl_->runs_here(); }

bool pool::is_shutting_down() const noexcept { return impl_->is_stopping(); }

void pool::shutdown() {
    if (!impl_) {
        return;
    }
    impl_->request_stop();
    asio::post(impl_->executor(), [impl = impl_]() { impl->shutdown(); });
}

}  // namespace imagegate::upstream
