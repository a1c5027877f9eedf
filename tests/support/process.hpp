// A child process for tests that run the real executables: started with posix_spawn, its
// stdout and stderr captured to a file, signalled and reaped by its PID.
#pragma once

#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace imagegate::testing {

/// A child process with stdout+stderr captured to a file; killed if still running at the end.
/// Not thread-safe: one test thread drives it.
class process {
public:
    process(std::vector<std::string> argv, std::vector<std::string> env,
            const std::filesystem::path& out)
        : out_(out) {
        std::vector<char*> av;
        for (auto& a : argv) {
            av.push_back(a.data());
        }
        av.push_back(nullptr);
        std::vector<std::string> envs = std::move(env);
        std::vector<char*> ev;
        for (auto& e : envs) {
            ev.push_back(e.data());
        }
        ev.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        const int rc = posix_spawn(&pid_, av[0], &fa, nullptr, av.data(), ev.data());
        posix_spawn_file_actions_destroy(&fa);
        BOOST_REQUIRE_MESSAGE(rc == 0, "cannot start " << argv[0]);
    }
    ~process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait_exit(std::chrono::seconds(5));
        }
    }
    /// Exit status, or -1 if it did not exit within `limit`.
    int wait_exit(std::chrono::milliseconds limit) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return -1;
    }
    void signal(int sig) const { ::kill(pid_, sig); }
    std::string output() const {
        std::ifstream in(out_);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

private:
    pid_t pid_ = -1;
    std::filesystem::path out_;
};

}  // namespace imagegate::testing
