// See accept_guard.hpp.
#include "gateway/http/accept_guard.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace imagegate::gateway {
namespace {

int open_reserve() noexcept { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

// The soft open-files limit, for the log line that tells an operator what to raise.
std::uint64_t open_files_limit() noexcept {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) {
        return 0;
    }
    return lim.rlim_cur;
}

}  // namespace

accept_guard::accept_guard(std::string name, std::shared_ptr<spdlog::logger> log)
    : name_(std::move(name)), log_(std::move(log)), reserve_(open_reserve()) {}

accept_guard::~accept_guard() {
    if (reserve_ >= 0) {
        ::close(reserve_);
    }
}

bool accept_guard::on_failure(const boost::system::error_code& ec) {
    const bool system = ec.category() == boost::system::system_category();
    const bool emfile = system && ec.value() == EMFILE;
    const bool enfile = system && ec.value() == ENFILE;
    (emfile ? emfile_ : enfile ? enfile_ : other_).fetch_add(1, std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    if (!failing_) {
        failing_ = true;
        episode_failures_ = 0;
        episode_start_ = now;
        episode_logged_ = !ever_logged_ || now - last_logged_ >= log_interval;
        if (episode_logged_) {
            ever_logged_ = true;
            last_logged_ = now;
            if (emfile || enfile) {
                log_->error(
                    "{} listener cannot accept: {} ({}:{} {}); new connections are refused "
                    "until descriptors free up (open-files limit {})",
                    name_,
                    emfile ? "the process's open-files limit is reached"
                           : "the system's file table is full",
                    ec.category().name(), ec.value(), ec.message(), open_files_limit());
            } else {
                log_->error("{} listener cannot accept: {}:{} {}; retrying", name_,
                            ec.category().name(), ec.value(), ec.message());
            }
        }
    }
    ++episode_failures_;
    return emfile || enfile;
}

void accept_guard::on_success() {
    if (reserve_ < 0) {
        reacquire_reserve();
    }
    if (!failing_) {
        return;
    }
    failing_ = false;
    if (episode_logged_) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - episode_start_)
                            .count();
        log_->warn("{} listener accepting again after {} failed accept(s) over {} ms", name_,
                   episode_failures_, ms);
    }
}

bool accept_guard::release_reserve() noexcept {
    reacquire_reserve();  // lost earlier: maybe a descriptor is free again
    if (reserve_ < 0) {
        return false;
    }
    ::close(reserve_);
    reserve_ = -1;
    return true;
}

void accept_guard::reacquire_reserve() noexcept {
    if (reserve_ < 0) {
        reserve_ = open_reserve();
    }
}

accept_error_counts accept_guard::counts() const noexcept {
    return {.emfile = emfile_.load(std::memory_order_relaxed),
            .enfile = enfile_.load(std::memory_order_relaxed),
            .other = other_.load(std::memory_order_relaxed)};
}

}  // namespace imagegate::gateway
