// How to reach one Redis server: the connection options, the pure parser of
// `redis://` / `rediss://` URLs, the password file loader and the options' sanity check.
#pragma once

#include "gateway/redis/reader.hpp"

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>

namespace imagegate::redis {

/// Everything a client or subscriber needs to reach one server. A plain aggregate: the
/// composition root fills it from `[redis]` settings; immutable once handed over.
struct connection_options {
    /// Host name or IP literal (IPv6 without brackets).
    std::string host = "127.0.0.1";
    /// TCP port.
    std::uint16_t port = 6379;
    /// Logical database, selected after AUTH (SELECT); 0 sends no SELECT.
    std::uint32_t db = 0;
    /// ACL user (`AUTH user password`); empty: `AUTH password` for the default user.
    std::string user{};
    /// The password; empty: no AUTH. Comes from a mode-600 file (load_password_file), never
    /// from a URL, a flag or a log.
    std::string password{};
    /// TLS (`rediss://`): the server's chain and host name are verified, always.
    bool tls = false;
    /// PEM bundle of the CAs trusted for the server's certificate; empty: the system store.
    std::string ca_file{};
    /// Name checked against the certificate and sent as SNI; empty: `host`.
    std::string server_name{};
    /// Resolve + TCP connect + TLS handshake, together.
    std::chrono::milliseconds connect_timeout{500};
    /// Every operation, counted from when it is queued (AUTH, SELECT and PING at connect,
    /// then each exec). A caller's earlier deadline wins. A reply overdue by this much at
    /// the head of the pipeline breaks the connection.
    std::chrono::milliseconds op_timeout{100};
    /// An idle connection is PINGed this often, so a dead peer is noticed without traffic
    /// (the subscriber's only liveness signal).
    std::chrono::milliseconds health_check_interval{1000};
    /// Reconnect backoff: the first delay, doubled per failed attempt up to the maximum;
    /// each delay is drawn in [half, full] (jitter, so a fleet does not reconnect in step).
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{5000};
    /// Commands sent on one connection and still waiting for their reply; beyond it exec
    /// fails at once with too_many_pending.
    std::size_t max_pending = 4096;
    /// Bytes queued for writing on one connection; same failure beyond it.
    std::size_t max_write_buffer_bytes = 16 * 1024 * 1024;
    /// Caps on every reply (max_reply_bytes, bulk, array, depth).
    reply_limits limits;
};

/// What a `redis://` or `rediss://` URL says.
struct redis_url {
    bool tls = false;
    std::string host{};
    std::uint16_t port = 6379;
    std::uint32_t db = 0;
    std::string user{};  ///< percent-decoded; empty when the URL names none

    friend bool operator==(const redis_url&, const redis_url&) = default;
};

std::ostream& operator<<(std::ostream& os, const redis_url& u);

/// Why a URL, a password file or a set of options was refused: one sentence for an
/// operator. Never contains a password.
struct option_error {
    std::string reason;
    friend bool operator==(const option_error&, const option_error&) = default;
};

std::ostream& operator<<(std::ostream& os, const option_error& e);

/// Lets `result<T, option_error>::value()` throw std::invalid_argument carrying `reason`.
[[noreturn]] void throw_exception_from_error(const option_error& e,
                                             const boost::source_location& loc);

/// Parses `redis://[user@]host[:port][/db]` and `rediss://…` (scheme case-insensitive).
/// Host: a name, an IPv4 literal or a bracketed IPv6 literal; port 1..65535, default 6379;
/// db decimal, default 0. The user may be percent-encoded. Refused: a password in the URL
/// (`user:pass@`: it would end up in process listings and logs), a query, a fragment,
/// other schemes, control bytes and spaces.
boost::system::result<redis_url, option_error> parse_url(std::string_view text);

/// Copies what the URL says into `opts` (host, port, db, user, tls).
void apply_url(const redis_url& url, connection_options& opts);

/// Reads the password from `path`: a regular file that group and others cannot read or write
/// (config::read_secret_file), first line, surrounding white space trimmed; refused when
/// empty or containing control bytes.
boost::system::result<std::string, option_error> load_password_file(const std::string& path);

/// Refuses inconsistent options: a user without a password, zero timeouts, a depth
/// outside 1..7, reconnect_min > reconnect_max, zero caps.
boost::system::result<void, option_error> check(const connection_options& opts);

/// `rediss://user@host:port/db` plus the TLS trust source, for start-up logs. The password
/// appears only as "password set".
std::string describe(const connection_options& opts);

}  // namespace imagegate::redis
