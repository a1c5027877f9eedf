// The warm state file on disk: the atomic write, the start-up read, and the writer thread.
#include "gateway/warm/state_store.hpp"

#include "config/files.hpp"
#include "gateway/warm/state_file.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace imagegate::warm {
namespace {

// Closes a descriptor on every path out.
struct fd_closer {
    int fd = -1;
    ~fd_closer() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

std::string failed(const std::string& what, const std::string& path) {
    return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

std::string write_state_file(const std::string& path, std::string_view text) {
    const std::filesystem::path target(path);
    const std::filesystem::path dir =
        target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
    // A name of our own in the same directory (rename is atomic only within a file system);
    // mkostemp creates it 0600 and never follows or reuses an existing name.
    std::string tmp = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
    fd_closer f{::mkostemp(tmp.data(), O_CLOEXEC)};
    if (f.fd < 0) {
        return failed("cannot create a temporary file for", path);
    }
    std::string error;
    for (std::size_t done = 0; done < text.size() && error.empty();) {
        const auto n = ::write(f.fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error = failed("cannot write", tmp);
        } else {
            done += static_cast<std::size_t>(n);
        }
    }
    if (error.empty() && ::fchmod(f.fd, 0600) != 0) {
        error = failed("cannot chmod", tmp);
    }
    if (error.empty() && ::fsync(f.fd) != 0) {
        error = failed("cannot fsync", tmp);
    }
    if (error.empty() && ::rename(tmp.c_str(), path.c_str()) != 0) {
        error = failed("cannot rename a temporary file over", path);
    }
    if (!error.empty()) {
        ::unlink(tmp.c_str());
        return error;
    }
    // The rename itself is durable once the directory is.
    fd_closer d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (d.fd < 0 || ::fsync(d.fd) != 0) {
        return failed("cannot fsync the directory of", path);
    }
    return {};
}

/// One thread that does every write, in the order they were asked for.
class state_store::writer {
public:
    asio::thread_pool pool{1};
    std::once_flag joined;
    void join() {
        std::call_once(joined, [this] { pool.join(); });
    }
    ~writer() { join(); }
};

state_store::state_store(std::string path, std::shared_ptr<spdlog::logger> log)
    : path_(std::move(path)), log_(std::move(log)), writer_(std::make_unique<writer>()) {}

state_store::~state_store() = default;

std::vector<job_progress> state_store::load() {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec) && !ec) {
        log_->info("warm state file {}: none yet (no saved jobs)", path_);
        return {};
    }
    auto file = config::read_regular_file(path_, max_state_bytes);
    if (!file.error.empty()) {
        log_->error("warm state file: {}: starting without saved jobs", file.error);
        return {};
    }
    parsed_state st = parse_state(file.text);
    for (const auto& r : st.refusals) {
        // Reasons are our own words, never bytes of the file.
        if (r.line == 0) {
            log_->error("warm state file {} refused: {}: starting without saved jobs", path_,
                        r.reason);
        } else {
            log_->warn("warm state file {}: line {} refused: {}", path_, r.line, r.reason);
        }
    }
    log_->info("warm state file {}: {} saved job(s)", path_, st.jobs.size());
    return std::move(st.jobs);
}

void state_store::write_now(std::uint64_t seq, const std::string& text) {
    if (seq <= written_seq_) {
        return;  // a later snapshot is on disk already
    }
    const std::string error = write_state_file(path_, text);
    if (error.empty()) {
        written_seq_ = seq;
        writes_.fetch_add(1, std::memory_order_relaxed);
        if (failing_) {
            failing_ = false;
            log_->info("warm state file {} written again", path_);
        }
        return;
    }
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    if (!failing_) {  // once per run of failures: a full disk must not flood the log
        failing_ = true;
        log_->warn(
            "warm state file not written ({}): jobs go on, a restart resumes from the "
            "last position written",
            error);
    }
}

asio::awaitable<void> state_store::write_on(state_store* self, std::uint64_t seq,
                                            std::string text) {
    self->write_now(seq, text);
    co_return;
}

asio::awaitable<void> state_store::save(std::uint64_t seq, std::string text) {
    co_await asio::co_spawn(writer_->pool.get_executor(), write_on(this, seq, std::move(text)),
                            use_awaitable);
}

void state_store::drain() { writer_->join(); }

void state_store::save_detached(std::uint64_t seq, std::string text) {
    asio::post(writer_->pool.get_executor(),
               [this, seq, t = std::move(text)] { write_now(seq, t); });
}

}  // namespace imagegate::warm
