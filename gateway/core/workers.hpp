// The process's I/O threads: N io_contexts, each run by exactly one thread. The handlers of
// one context therefore never run concurrently, and nothing needs a strand. Production
// (gateway/runtime/app.cpp) and every test that needs I/O threads run this one model.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace imagegate {

/// N single-threaded io_contexts and their threads. Owned by the composition root (or a
/// test), declared before every object that owns I/O objects so that it is destroyed last.
/// Lifecycle: construct, start(), later release() (let each thread return once its context
/// has no work left) or stop() (at once), then join(); the destructor stops and joins what
/// still runs and destroys the handlers left queued.
/// Thread-safety: size(), executor(), executors(), post_to_all(), release(), stop() and the
/// queries from any thread; start(), wait_until(), join(), destroy_pending() and the
/// destructor from one thread that is not a worker (a worker cannot wait for itself).
class workers {
public:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    /// `n` contexts (at least 1); no thread runs until start().
    explicit workers(std::size_t n);
    ~workers();
    workers(const workers&) = delete;
    workers& operator=(const workers&) = delete;

    std::size_t size() const noexcept { return contexts_.size(); }
    /// The executor of context `i` (i < size()).
    asio::any_io_executor executor(std::size_t i) const;
    /// Every context's executor, in index order.
    std::vector<asio::any_io_executor> executors() const;

    /// Starts one thread per context. Each context keeps running, even without work, until
    /// release() or stop().
    void start();
    /// Each thread returns once its context has no work left.
    void release();
    /// Waits until every thread returned from its context (true) or `deadline` passed.
    bool wait_until(std::chrono::steady_clock::time_point deadline);
    /// Stops every context at once; handlers still queued stay queued (see destroy_pending).
    void stop() noexcept;
    /// Joins the threads (after release() or stop()).
    void join();
    /// After join(): destroys the handlers still queued on every context while all contexts
    /// exist (a handler queued on one may own I/O objects of another). Idempotent.
    void destroy_pending() noexcept;

    /// Posts a copy of `f` to every context.
    template <class F>
    void post_to_all(const F& f) const {
        for (std::size_t i = 0; i < size(); ++i) {
            asio::post(executor(i), f);
        }
    }

    /// The calling thread is one of this object's workers.
    bool runs_current_thread() const noexcept;
    /// The index of the calling worker thread within its workers object; npos on any other
    /// thread.
    static std::size_t current_index() noexcept;

private:
    struct context;
    std::vector<std::unique_ptr<context>> contexts_;
    std::vector<asio::any_io_executor> work_;  // outstanding-work-tracked executors
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable returned_;
    std::size_t running_ = 0;  // threads inside their context's run(); guarded by mu_
};

/// The calling thread is a worker thread (of any workers object).
bool on_worker_thread() noexcept;

/// The calling thread is the worker that runs `ex`'s io_context: code on `ex` runs on this
/// thread only, serialised with every other handler of that context, so it may touch state
/// confined to `ex` without a lock. The invariant the threading model rests on; cheap (a
/// thread-local load and one query of the executor) so hot paths may check it.
bool runs_on_this_worker(const asio::any_io_executor& ex) noexcept;

}  // namespace imagegate
