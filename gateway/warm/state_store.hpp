// Where warm jobs are kept across restarts (`[warm] state_file`): read once at start-up as
// hostile input, written after every stored page on a thread of its own (temp file in the
// same directory, fsync, rename, mode 0600), so an I/O worker never waits for the disk.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/warm/job.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::warm {

/// Replaces `path` with `text` atomically: a temporary file in the same directory (mode
/// 0600), written and fsynced, renamed over `path`, then the directory fsynced. Empty on
/// success, else why (naming the path). Blocks on the disk: never call it on an I/O worker.
std::string write_state_file(const std::string& path, std::string_view text);

/// Owned by the warmer (through its shared core). Thread-safety: every member from any
/// thread. Destroying it waits for the writes already queued.
class state_store {
public:
    state_store(std::string path, std::shared_ptr<spdlog::logger> log);
    ~state_store();
    state_store(const state_store&) = delete;
    state_store& operator=(const state_store&) = delete;

    /// Reads and parses the file (state_file.hpp): its jobs, each line refused logged with
    /// its reason. A missing file is no jobs; one that cannot be read, or whose header is
    /// not version 1, is logged and gives no jobs (the next write replaces it). Blocking: at
    /// start-up, before the workers run.
    std::vector<job_progress> load();

    /// Writes `text`, snapshot number `seq`, on the writer thread and resumes the caller
    /// when it is on disk (or failed: logged and counted; the caller goes on either way). A
    /// snapshot older than one already written is skipped: the newer one holds its news.
    asio::awaitable<void> save(std::uint64_t seq, std::string text);
    /// save() without waiting (a job's last write, from its completion handler).
    void save_detached(std::uint64_t seq, std::string text);
    /// Waits for every write queued so far and stops the writer thread; later saves are
    /// dropped. For the owner's destructor (the workers have stopped): no write completes
    /// into an io_context that is being destroyed. Idempotent; not from the writer thread.
    void drain();

    const std::string& path() const noexcept { return path_; }
    std::uint64_t writes() const noexcept { return writes_.load(std::memory_order_relaxed); }
    std::uint64_t write_errors() const noexcept {
        return write_errors_.load(std::memory_order_relaxed);
    }

private:
    class writer;
    /// On the writer thread: the write itself.
    void write_now(std::uint64_t seq, const std::string& text);
    static asio::awaitable<void> write_on(state_store* self, std::uint64_t seq, std::string text);

    std::string path_;
    std::shared_ptr<spdlog::logger> log_;
    std::atomic<std::uint64_t> writes_{0};
    std::atomic<std::uint64_t> write_errors_{0};
    std::uint64_t written_seq_ = 0;   // the writer thread's only
    bool failing_ = false;            // the writer thread's only: a failure was logged
    std::unique_ptr<writer> writer_;  // last: destroyed (joined) first
};

}  // namespace imagegate::warm
