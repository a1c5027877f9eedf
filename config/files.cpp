#include <cstdio>
#include "config/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "config/parse.hpp"

namespace imagegate::config {
namespace {

/// Owns a file descriptor.
class fd_guard {
public:
    explicit fd_guard(int fd) : fd_(fd) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    int get() const { return fd_; }

private:
    int fd_;
};

file_read failure(const std::string& path, const std::string& what) {
    file_read out;
    out.error = "cannot read " + path + ": " + what;
    return out;
}

}  // namespace

file_read read_regular_file(const std::string& path, std::uint64_t max_bytes) {
    // O_NONBLOCK: opening a FIFO named by mistake must not hang start-up; regular files
    // ignore the flag.
    const fd_guard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (fd.get() < 0) {
        return failure(path, std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return failure(path, std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return failure(path, "not a regular file");
    }
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
        return failure(path, "larger than " + format_size(max_bytes));
    }
    file_read out;
    out.mode = static_cast<unsigned>(st.st_mode) & 07777U;
    out.text.reserve(static_cast<std::size_t>(st.st_size));
    // Read to EOF rather than st_size bytes, so a file that grew after fstat() is refused
    // instead of being cut short.
    std::array<char, 16384> chunk{};
    for (;;) {
        const auto n = ::read(fd.get(), chunk.data(), chunk.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return failure(path, std::strerror(errno));
        }
        if (n == 0) {
            break;
        }
        out.text.append(chunk.data(), static_cast<std::size_t>(n));
        if (out.text.size() > max_bytes) {
            return failure(path, "larger than " + format_size(max_bytes));
        }
    }
    return out;
}

file_read read_secret_file(const std::string& path, std::uint64_t max_bytes) {
    file_read file = read_regular_file(path, max_bytes);
    if (file.error.empty() && (file.mode & 077U) != 0) {
        char mode[16];
        std::snprintf(mode, sizeof mode, "%04o", file.mode & 07777U);
        file.error = "secret file " + path + " is readable or writable by group or others (mode " +
                     mode + "); run `chmod 600 " + path +
                     "` (Kubernetes: defaultMode: 0400 on the volume)";
        file.text.clear();
    }
    return file;
}

std::string_view trim(std::string_view text) {
    constexpr std::string_view space = " \t\r\n\f\v";
    const auto first = text.find_first_not_of(space);
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(space);
    return text.substr(first, last - first + 1);
}

}  // namespace imagegate::config
