// The Redis client's own error codes (imagegate::redis::error) and their Boost.System
// category. Redis error *replies* (`-ERR …`) are not errors here: they are reply values.
#pragma once

#include <boost/system/error_code.hpp>

#include <iosfwd>
#include <string_view>
#include <type_traits>

namespace imagegate::redis {

/// Why a Redis operation produced no reply. The numbers are stable: they appear in logs.
enum class error : int {
    // The client, before anything is sent
    not_connected = 1,  ///< the client is down (reconnecting): failed at once, never queued
    too_many_pending,   ///< the connection's pipeline is full (max_pending / write buffer cap)
    command_too_large,  ///< a command over max_write_buffer_bytes or RESP framing limits
    shutting_down,      ///< the client or subscriber was stopped
    cancelled,          ///< the caller's coroutine was cancelled; the reply is discarded
    // Deadlines
    timeout,           ///< the operation's own deadline passed; the reply is discarded
    connect_timeout,   ///< resolve + connect + TLS handshake passed connect_timeout
    pipeline_stalled,  ///< the oldest reply was overdue by op_timeout: connection closed
    // Establishing a connection
    resolve_failed,    ///< the host name did not resolve
    connect_failed,    ///< TCP connect failed (refused, unreachable)
    tls_failed,        ///< TLS handshake or certificate / host-name verification failed
    auth_failed,       ///< AUTH was refused (wrong user or password, user disabled)
    select_failed,     ///< SELECT db was refused
    handshake_failed,  ///< the PING after AUTH/SELECT did not answer PONG
    // An established connection
    connection_lost,   ///< the server closed or reset the connection, or a write failed
    protocol_error,    ///< malformed RESP, or a reply nobody asked for
    bulk_too_large,    ///< a bulk string or status line over max_bulk_bytes
    array_too_large,   ///< an array header over max_array_elements
    nesting_too_deep,  ///< arrays nested deeper than max_depth
    reply_too_large,   ///< one reply (all its parts, or the bytes buffered for it) over
                       ///< max_reply_bytes
};

const boost::system::error_category& redis_category() noexcept;

inline boost::system::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), redis_category()};
}

/// The enumerator's name ("pipeline_stalled"), for logs and test output.
std::string_view to_string(error e) noexcept;
std::ostream& operator<<(std::ostream& os, error e);

/// Every enumerator, for exhaustive tests.
inline constexpr error all_errors[] = {
    error::not_connected,    error::too_many_pending, error::command_too_large,
    error::shutting_down,    error::cancelled,        error::timeout,
    error::connect_timeout,  error::pipeline_stalled, error::resolve_failed,
    error::connect_failed,   error::tls_failed,       error::auth_failed,
    error::select_failed,    error::handshake_failed, error::connection_lost,
    error::protocol_error,   error::bulk_too_large,   error::array_too_large,
    error::nesting_too_deep, error::reply_too_large,
};

}  // namespace imagegate::redis

template <>
struct boost::system::is_error_code_enum<imagegate::redis::error> : std::true_type {};
