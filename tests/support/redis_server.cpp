#include "tests/support/redis_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace imagegate::testing {
namespace {

using namespace std::chrono_literals;

/// Closes a descriptor on scope exit.
struct fd_closer {
    int fd;
    ~fd_closer() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

std::string find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/bin:/usr/sbin");
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        const auto candidate = std::filesystem::path(dir.empty() ? "." : dir) / name;
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate.string();
        }
    }
    return {};
}

/// A loopback port that was free a moment ago (bound to port 0, then released). Another
/// process may take it before redis-server binds it: start() retries with a new one.
std::uint16_t free_port() {
    const fd_closer s{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (s.fd < 0) {
        throw std::system_error(errno, std::generic_category(), "socket");
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(s.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        throw std::system_error(errno, std::generic_category(), "bind/getsockname");
    }
    return ntohs(addr.sin_port);
}

/// A blocking loopback connection with 5 s send/receive timeouts, or -1.
int connect_loopback(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

std::string resp(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) {
        out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    }
    return out;
}

bool send_all(int fd, const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        const auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            return false;
        }
        sent += static_cast<std::size_t>(n);
    }
    return true;
}

/// Reads one reply: its first line, and for a bulk string "\n" plus its bytes. Empty on
/// error or timeout.
std::string read_reply(int fd) {
    std::string buf;
    char c = 0;
    while (buf.size() < 2 || buf.compare(buf.size() - 2, 2, "\r\n") != 0) {
        if (::recv(fd, &c, 1, 0) != 1) {
            return {};
        }
        buf.push_back(c);
    }
    buf.resize(buf.size() - 2);
    if (buf.size() > 1 && buf[0] == '$' && buf != "$-1") {
        std::string body(std::stoul(buf.substr(1)) + 2, '\0');
        std::size_t got = 0;
        while (got < body.size()) {
            const auto n = ::recv(fd, body.data() + got, body.size() - got, 0);
            if (n <= 0) {
                return {};
            }
            got += static_cast<std::size_t>(n);
        }
        body.resize(body.size() - 2);
        buf += "\n" + body;
    }
    return buf;
}

std::string tail(const std::string& text, std::size_t n) {
    return text.size() <= n ? text : text.substr(text.size() - n);
}

}  // namespace

redis_server::redis_server(redis_server_options opts) : opts_(std::move(opts)) {
    binary_ = find_in_path("redis-server");
    if (binary_.empty()) {
        throw std::runtime_error(
            "redis-server is not installed: the Redis tests need a real server (Debian "
            "package redis-server; run deploy/install-deps.sh)");
    }
    std::string templ =
        (std::filesystem::temp_directory_path() / "imagegate-redis-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    dir_ = templ;
    if (opts_.tls) {
        const pki certs = make_test_pki();
        write_file((dir_ / "ca.pem").string(), certs.ca_cert_pem);
        write_file((dir_ / "server.pem").string(), certs.server_cert_pem);
        write_file((dir_ / "server.key").string(), certs.server_key_pem);
    }
    // A port taken between free_port() and redis-server's bind: try again with new ones.
    for (int attempt = 1;; ++attempt) {
        port_ = free_port();
        tls_port_ = opts_.tls ? free_port() : 0;
        try {
            start();
            return;
        } catch (const std::exception&) {
            if (attempt == 5 || log().find("Address already in use") == std::string::npos) {
                std::error_code ignored;
                std::filesystem::remove_all(dir_, ignored);
                throw;
            }
        }
    }
}

redis_server::~redis_server() {
    kill();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

void redis_server::write_config() const {
    // Secrets go to a mode-600 file, never on the command line (visible in ps).
    std::string conf = "dir " + dir_.string() + "\nlogfile " + (dir_ / "redis.log").string() + "\n";
    if (!opts_.password.empty()) {
        conf += "requirepass " + opts_.password + "\n";
    }
    if (!opts_.acl_user.empty()) {
        conf += "user " + opts_.acl_user + " on >" + opts_.acl_password + " ~* &* +@all\n";
    }
    if (opts_.tls) {
        conf += "tls-port " + std::to_string(tls_port_) + "\n";
        conf += "tls-cert-file " + (dir_ / "server.pem").string() + "\n";
        conf += "tls-key-file " + (dir_ / "server.key").string() + "\n";
        conf += "tls-ca-cert-file " + ca_file() + "\n";
        conf += "tls-auth-clients no\n";
    }
    const auto path = dir_ / "redis.conf";
    write_file(path.string(), conf);
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

void redis_server::start() {
    write_config();
    const std::string conf = (dir_ / "redis.conf").string();
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {binary_,        conf,        "--port",      port,
                                     "--bind",       "127.0.0.1", "--save",      "",
                                     "--appendonly", "no",        "--daemonize", "no"};
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    if (child < 0) {
        throw std::system_error(errno, std::generic_category(), "fork");
    }
    if (child == 0) {
        // Only async-signal-safe calls between fork and exec. The server dies with the test
        // process, even when the test crashes.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(127);
        }
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    pid_ = child;

    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("redis-server exited during start-up; log tail:\n" +
                                     tail(log(), 2000));
        }
        const fd_closer fd{connect_loopback(port_)};
        if (fd.fd >= 0 && send_all(fd.fd, resp({"PING"}))) {
            const auto line = read_reply(fd.fd);
            // NOAUTH: up, and asking for the password we configured.
            if (line == "+PONG" || line.rfind("-NOAUTH", 0) == 0) {
                return;
            }
        }
        // Polling is the only readiness signal a foreign process gives us.
        std::this_thread::sleep_for(10ms);
    }
    kill();
    throw std::runtime_error("redis-server did not answer PING within 10 s; log tail:\n" +
                             tail(log(), 2000));
}

void redis_server::pause() {
    if (pid_ > 0) {
        ::kill(pid_, SIGSTOP);
    }
}

void redis_server::resume() {
    if (pid_ > 0) {
        ::kill(pid_, SIGCONT);
    }
}

void redis_server::kill() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);  // also ends a stopped process
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }
}

void redis_server::restart() {
    kill();
    start();
}

std::string redis_server::command(const std::vector<std::string>& args) const {
    const fd_closer fd{connect_loopback(port_)};
    if (fd.fd < 0) {
        throw std::runtime_error("cannot connect to the test redis-server");
    }
    std::string request;
    if (!opts_.password.empty()) {
        request += resp({"AUTH", opts_.password});
    }
    request += resp(args);
    if (!send_all(fd.fd, request)) {
        throw std::runtime_error("cannot send to the test redis-server");
    }
    if (!opts_.password.empty() && read_reply(fd.fd) != "+OK") {
        throw std::runtime_error("the test redis-server refused AUTH");
    }
    return read_reply(fd.fd);
}

std::string redis_server::log() const {
    std::ifstream in(dir_ / "redis.log", std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

}  // namespace imagegate::testing
