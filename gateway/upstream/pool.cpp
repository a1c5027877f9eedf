#include "gateway/upstream/pool.hpp"

#include "gateway/core/serial_executor.hpp"
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
#include <mutex>
#include <optional>
#include <vector>

namespace imagegate::upstream {

using namespace asio::experimental::awaitable_operators;

namespace detail {

/// Pool state and logic. Shared by the pool, leases and in-flight tasks (each holds a
/// shared_ptr, so posted releases stay valid after the pool handle is gone).
/// Thread-safety: every member function except the constructor, try_take_idle() and the
/// stop flag runs on strand_. The slot and waiter state is also guarded by mu_, which each
/// strand entry point holds for its synchronous part, so that try_take_idle() may lend an
/// idle connection from any thread without a hop to the strand. Timers (waiters' wake-ups,
/// the reaper) stay strand-confined: try_take_idle() never touches them.
class pool_impl : public std::enable_shared_from_this<pool_impl> {
public:
    pool_impl(asio::any_io_executor ex, std::shared_ptr<const connection_options> conn_opts,
              pool_options opts, std::shared_ptr<upstream::stats> st,
              std::shared_ptr<spdlog::logger> log)
        : ex_(ex),
          strand_(serial_executor(ex, opts.single_threaded)),
          conn_opts_(std::move(conn_opts)),
          opts_(opts),
          stats_(std::move(st)),
          log_(std::move(log)),
          reaper_(strand_) {
        BOOST_ASSERT(opts_.max_connections > 0);
    }

    const asio::any_io_executor& strand() const noexcept { return strand_; }

    /// Set (from any thread) as soon as shutdown is requested.
    bool is_stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
    void request_stop() noexcept { stopping_.store(true, std::memory_order_release); }

    static asio::awaitable<boost::system::result<lease>> acquire_on_strand(
        std::shared_ptr<pool_impl> self, clock::time_point deadline, acquire_mode mode);

    /// The most recently parked idle connection, lent from the calling thread; nothing when
    /// none is idle or the pool is stopping (the strand path then decides).
    std::optional<lease> try_take_idle();

    void on_release(std::uint64_t id, bool reusable);
    void shutdown();

private:
    struct slot {
        std::uint64_t id = 0;
        slot_state state = slot_state::connecting;
        std::shared_ptr<connection> conn;
        clock::time_point idle_since{};
    };

    /// A queued acquirer. `outcome` is written (on the strand) before `wake` is cancelled,
    /// so the acquirer reads it whichever of its two timers finished first: nothing handed
    /// over is lost when the deadline and the hand-over race.
    struct waiter {
        explicit waiter(const asio::any_io_executor& s, acquire_mode m)
            : wake(s, clock::time_point::max()), mode(m) {}
        asio::steady_timer wake;
        acquire_mode mode;
        std::optional<boost::system::result<lease>> outcome;
    };

    slot* find(std::uint64_t id) noexcept;
    slot_facts facts_for(const slot& s) const noexcept;
    std::size_t count(slot_state st) const noexcept;
    void update_gauges() noexcept;

    std::optional<lease> take_idle();
    /// Closes an idle connection that is readable (see connection::is_idle_and_open).
    void discard_unreadable(slot& s);
    void evict_oldest_idle();
    void open_as_needed();
    void start_connect(slot& s);
    void on_connected(std::uint64_t id, std::exception_ptr ep,
                      boost::system::result<void, failure> r);
    void hand_to_first_waiter(slot& s, bool reused);
    void fail_first_waiter(boost::system::error_code ec);
    void close_and_erase(std::uint64_t id);
    void park(slot& s);
    void arm_reaper();
    void on_reap(boost::system::error_code ec);

    asio::any_io_executor ex_;
    asio::any_io_executor strand_;  // a strand, or the executor itself (single_threaded)
    // Guards slots_, waiters_, pending_connects_, next_id_ and shutting_down_ (see the class
    // comment). Never held across a suspension point or while running a handler.
    mutable std::mutex mu_;
    std::shared_ptr<const connection_options> conn_opts_;
    pool_options opts_;
    std::shared_ptr<upstream::stats> stats_;
    std::shared_ptr<spdlog::logger> log_;

    std::list<slot> slots_;                        // every counted connection
    std::deque<std::shared_ptr<waiter>> waiters_;  // FIFO
    std::size_t pending_connects_ = 0;             // slots in connecting state
    std::uint64_t next_id_ = 1;
    bool shutting_down_ = false;         // strand-confined view of the shutdown
    std::atomic<bool> stopping_{false};  // any-thread view, set before the shutdown is posted
    asio::steady_timer reaper_;          // fires at the earliest idle expiry
    std::optional<clock::time_point> reaper_at_;
};

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
    stats_->in_use.store(count(slot_state::in_use), std::memory_order_relaxed);
    stats_->idle.store(count(slot_state::idle), std::memory_order_relaxed);
}

std::optional<lease> pool_impl::try_take_idle() {
    const std::lock_guard lock(mu_);
    if (shutting_down_) {
        return std::nullopt;
    }
    return take_idle();
}

std::optional<lease> pool_impl::take_idle() {
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

void pool_impl::evict_oldest_idle() {
    slot* oldest = nullptr;
    for (auto& s : slots_) {
        if (s.state == slot_state::idle &&
            (oldest == nullptr || s.idle_since < oldest->idle_since)) {
            oldest = &s;
        }
    }
    if (oldest != nullptr) {
        const auto t = transition(oldest->state, slot_event::evicted, facts_for(*oldest),
                                  {opts_.max_requests_per_connection});
        BOOST_ASSERT(t.action == slot_action::close);
        (void)t;  // only checked in debug builds
        close_and_erase(oldest->id);
    }
}

void pool_impl::open_as_needed() {
    if (shutting_down_) {
        return;
    }
    auto n = connections_to_open({opts_.max_connections}, slots_.size(), pending_connects_,
                                 waiters_.size());
    while (n-- > 0) {
        auto& s = slots_.emplace_back();
        s.id = next_id_++;
        s.state = slot_state::connecting;
        s.conn =
            std::make_shared<connection>(serial_executor(ex_, opts_.single_threaded), conn_opts_);
        ++pending_connects_;
        start_connect(s);
    }
}

void pool_impl::start_connect(slot& s) {
    // The connect task is owned by the slot (which stays counted until the task reports) and
    // runs on the connection's strand. Its completion handler is a plain lambda: it carries
    // an exception, if any, back to the pool strand, where it is logged and counted as a
    // failed connect.
    auto conn = s.conn;
    const auto deadline = clock::now() + opts_.connect_timeout;
    asio::co_spawn(conn->get_executor(), conn->connect(deadline),
                   [self = shared_from_this(), id = s.id, conn](
                       std::exception_ptr ep, boost::system::result<void, failure> r) {
                       asio::post(self->strand_, [self, id, ep, r = std::move(r)]() mutable {
                           self->on_connected(id, ep, std::move(r));
                       });
                   });
}

void pool_impl::on_connected(std::uint64_t id, std::exception_ptr ep,
                             boost::system::result<void, failure> r) {
    const std::lock_guard lock(mu_);
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
    case slot_action::park: park(*s); break;
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
    // close() must run on the connection's strand; nobody else owns the stream any more.
    asio::post(it->conn->get_executor(), [conn = it->conn]() { conn->close(); });
    slots_.erase(it);
}

void pool_impl::park(slot& s) {
    s.state = slot_state::idle;
    s.idle_since = clock::now();
    arm_reaper();
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
    const std::lock_guard lock(mu_);
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
    const std::lock_guard lock(mu_);
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
    case slot_action::park: park(*s); break;
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
    const std::lock_guard lock(mu_);
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
            // stream on its own strand makes the pending step fail with operation_aborted.
            asio::post(s.conn->get_executor(), [conn = s.conn]() { conn->close(); });
        }
    }
    for (const auto id : to_close) {
        close_and_erase(id);
    }
    update_gauges();
}

asio::awaitable<boost::system::result<lease>> pool_impl::acquire_on_strand(
    std::shared_ptr<pool_impl> self, clock::time_point deadline, acquire_mode mode) {
    deadline = std::min(deadline, clock::now() + self->opts_.acquire_timeout);
    auto w = std::make_shared<waiter>(self->strand_, mode);
    {
        const std::lock_guard lock(self->mu_);
        if (self->shutting_down_) {
            co_return make_error_code(errc::shutting_down);
        }
        if (mode == acquire_mode::any) {
            auto idle = self->take_idle();
            if (idle) {
                co_return std::move(*idle);
            }
        } else if (self->slots_.size() >= self->opts_.max_connections) {
            // A retry must not queue behind connections that are probably as stale as the
            // one that just failed: make room for a new one.
            self->evict_oldest_idle();
        }

        self->stats_->acquire_waits.fetch_add(1, std::memory_order_relaxed);
        self->waiters_.push_back(w);
        self->open_as_needed();
    }

    asio::steady_timer timer(self->strand_, deadline);
    auto fired = co_await (w->wake.async_wait(use_nothrow) || timer.async_wait(use_nothrow));
    (void)fired;
    const std::lock_guard lock(self->mu_);
    if (w->outcome) {
        co_return std::move(*w->outcome);
    }
    // Waited out (or this coroutine was cancelled): leave the queue.
    auto& q = self->waiters_;
    q.erase(std::remove(q.begin(), q.end(), w), q.end());
    self->stats_->acquire_timeouts.fetch_add(1, std::memory_order_relaxed);
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
    // The lease holder has finished its I/O (exchange returned), so reading the
    // connection's verdict here is ordered before the pool's use of it by the post.
    const bool reusable = reusable_ && conn_->is_reusable();
    conn_.reset();
    auto pool = std::move(pool_);
    try {
        const auto& strand = pool->strand();
        asio::post(strand, [pool = std::move(pool), id = slot_id_, reusable]() {
            pool->on_release(id, reusable);
        });
    } catch (...) {
        // post allocates; without it the slot would stay in_use forever, shrinking the pool
        // silently. There is no state we can continue from.
        std::abort();
    }
}

pool::pool(asio::any_io_executor ex, std::shared_ptr<const connection_options> conn_opts,
           pool_options opts, std::shared_ptr<upstream::stats> st,
           std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_shared<detail::pool_impl>(std::move(ex), std::move(conn_opts), opts,
                                                std::move(st), std::move(log))) {}

pool::~pool() { shutdown(); }

asio::awaitable<boost::system::result<lease>> pool::acquire(clock::time_point deadline,
                                                            acquire_mode mode) {
    // The common case, an idle connection, is lent right here: no hop to the pool strand and
    // back (two trips through the io_context queue, which under a burst of requests is long).
    if (mode == acquire_mode::any) {
        if (auto idle = impl_->try_take_idle()) {
            co_return std::move(*idle);
        }
    }
    // Otherwise wait on the pool strand (timers and waiters live there) and resume the caller
    // on its own executor when it completes.
    auto r = co_await asio::co_spawn(impl_->strand(),
                                     detail::pool_impl::acquire_on_strand(impl_, deadline, mode),
                                     use_awaitable);
    co_return r;
}

bool pool::is_shutting_down() const noexcept { return impl_->is_stopping(); }

void pool::shutdown() {
    if (!impl_) {
        return;
    }
    impl_->request_stop();
    asio::post(impl_->strand(), [impl = impl_]() { impl->shutdown(); });
}

}  // namespace imagegate::upstream
