#include "gateway/core/workers.hpp"

#include "gateway/core/check.hpp"

#include <boost/asio/execution/context_as.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>

namespace imagegate {

namespace {

// Who the calling thread is: set by a worker thread for the time it runs its context.
struct worker_identity {
    const workers* owner = nullptr;
    std::size_t index = workers::npos;
    const asio::execution_context* context = nullptr;
};

thread_local const worker_identity* this_worker = nullptr;

}  // namespace

// concurrency_hint 1: Asio's scheduler may assume one thread runs it. Posting from other
// threads stays safe.
struct workers::context : asio::io_context {
    context(const workers* owner, std::size_t index)
        : asio::io_context(1), identity{owner, index, this} {}
    void destroy_pending() noexcept { shutdown(); }
    worker_identity identity;
};

workers::workers(std::size_t n) {
    IMAGEGATE_CHECK(n > 0, "workers need at least one io_context");
    for (std::size_t i = 0; i < n; ++i) {
        contexts_.push_back(std::make_unique<context>(this, i));
    }
}

workers::~workers() {
    stop();
    join();
    destroy_pending();
}

asio::any_io_executor workers::executor(std::size_t i) const {
    return contexts_.at(i)->get_executor();
}

std::vector<asio::any_io_executor> workers::executors() const {
    std::vector<asio::any_io_executor> out;
    out.reserve(size());
    for (const auto& c : contexts_) {
        out.emplace_back(c->get_executor());
    }
    return out;
}

void workers::start() {
    IMAGEGATE_CHECK(!on_worker_thread(), "workers started from a worker thread");
    IMAGEGATE_CHECK(threads_.empty(), "workers started twice");
    for (const auto& c : contexts_) {
        work_.emplace_back(
            asio::prefer(c->get_executor(), asio::execution::outstanding_work.tracked));
    }
    {
        const std::lock_guard lock(mu_);
        running_ = contexts_.size();
    }
    for (const auto& c : contexts_) {
        threads_.emplace_back([this, ctx = c.get()] {
            this_worker = &ctx->identity;
            ctx->run();
            this_worker = nullptr;
            const std::lock_guard lock(mu_);
            --running_;
            returned_.notify_all();
        });
    }
}

void workers::release() {
    // Each executor's destruction (in its context's thread or here) drops one unit of work.
    const std::lock_guard lock(mu_);
    work_.clear();
}

bool workers::wait_until(std::chrono::steady_clock::time_point deadline) {
    IMAGEGATE_CHECK(!on_worker_thread(), "a worker waited for the workers to return");
    std::unique_lock lock(mu_);
    return returned_.wait_until(lock, deadline, [this] { return running_ == 0; });
}

void workers::stop() noexcept {
    for (const auto& c : contexts_) {
        c->stop();
    }
}

void workers::join() {
    IMAGEGATE_CHECK(!on_worker_thread(), "a worker joined the workers");
    for (auto& t : threads_) {
        t.join();
    }
    threads_.clear();
}

void workers::destroy_pending() noexcept {
    for (const auto& c : contexts_) {
        c->destroy_pending();
    }
}

bool workers::runs_current_thread() const noexcept {
    return this_worker != nullptr && this_worker->owner == this;
}

std::size_t workers::current_index() noexcept {
    return this_worker != nullptr ? this_worker->index : npos;
}

bool on_worker_thread() noexcept { return this_worker != nullptr; }

bool runs_on_this_worker(const asio::any_io_executor& ex) noexcept {
    const worker_identity* me = this_worker;
    if (me == nullptr || !ex) {
        return false;
    }
    return &asio::query(ex, asio::execution::context_as<asio::execution_context&>) == me->context;
}

}  // namespace imagegate
