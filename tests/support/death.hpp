// Runs a function in a forked child and reports how the child ended and what it wrote to
// stderr: for checks that must abort the process (IMAGEGATE_CHECK) in every build mode.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>
#include <utility>

namespace imagegate::testing {

struct child_end {
    bool aborted = false;  ///< ended by SIGABRT
    int exit_code = -1;    ///< when it exited instead
    std::string stderr_text;
};

/// Forks; the child runs `f` with its stderr piped to the parent and exits 0 if `f`
/// returns. Call only while the process has no other threads (a forked child gets only the
/// calling thread; locks held by others would stay locked there).
template <class F>
child_end run_in_child(F f) {
    int fds[2];
    if (::pipe(fds) != 0) {
        return {};
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        ::dup2(fds[1], STDERR_FILENO);
        std::signal(SIGABRT, SIG_DFL);  // the test framework's handler must not catch it
        f();
        ::_exit(0);
    }
    ::close(fds[1]);
    child_end end;
    char buf[512];
    for (;;) {
        const auto n = ::read(fds[0], buf, sizeof buf);
        if (n <= 0) {
            break;
        }
        end.stderr_text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    if (pid > 0 && ::waitpid(pid, &status, 0) == pid) {
        end.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
        end.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    return end;
}

}  // namespace imagegate::testing
