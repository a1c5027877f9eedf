// The pool's life cycle and handles: creating and attaching its state to the origin's limit,
// shutdown, the gauges it publishes, and the lease that lends a connection.
#include "gateway/upstream/pool_impl.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

namespace imagegate::upstream {

namespace detail {

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
