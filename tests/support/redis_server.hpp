// A real redis-server for tests: loopback only, a free port chosen at run time, no
// persistence, optional password / ACL user / TLS; stopped (and paused, killed, restarted)
// by its PID.
#pragma once

#include "tests/emulator/pki.hpp"

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace imagegate::testing {

struct redis_server_options {
    /// `requirepass` of the default user; empty: no password.
    std::string password{};
    /// An extra ACL user with every permission (`user <name> on ><password> ~* &* +@all`).
    std::string acl_user{};
    std::string acl_password{};
    /// Also listen with TLS on a second free port, with a certificate from a fresh test PKI
    /// (SAN localhost, 127.0.0.1); clients are not asked for certificates.
    bool tls = false;
};

/// Owns one redis-server process and its scratch directory (config, log, certificates).
/// The constructor throws std::runtime_error with a clear message when redis-server is not
/// installed or does not come up (the log's tail included). Not thread-safe: one test
/// thread drives it.
class redis_server {
public:
    explicit redis_server(redis_server_options opts = {});
    ~redis_server();
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    /// The TLS port; 0 without TLS.
    std::uint16_t tls_port() const noexcept { return tls_port_; }
    /// Path of the PEM file of the CA that signed the server certificate.
    std::string ca_file() const { return (dir_ / "ca.pem").string(); }
    pid_t pid() const noexcept { return pid_; }

    /// SIGSTOP: the server keeps its sockets (connects still complete in the kernel) but
    /// answers nothing.
    void pause();
    /// SIGCONT.
    void resume();
    /// SIGKILL and reap: connections are reset, new connects refused.
    void kill();
    /// Starts the server again on the same ports (kills it first if it runs); waits until it
    /// answers.
    void restart();

    /// Sends one command on a fresh blocking connection to the plain port (AUTH as the
    /// default user first when a password is set) and returns the reply's first line
    /// without CRLF ("+OK", ":1", "$5"), followed for a bulk string by "\n" and its bytes.
    /// For test setup and checks (SCRIPT FLUSH, PUBLISH, CLIENT KILL, DEBUG SLEEP).
    std::string command(const std::vector<std::string>& args) const;

    /// The server's log file, for failure messages.
    std::string log() const;

private:
    void start();
    void write_config() const;

    redis_server_options opts_;
    std::filesystem::path dir_;
    std::string binary_;
    std::uint16_t port_ = 0;
    std::uint16_t tls_port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace imagegate::testing
