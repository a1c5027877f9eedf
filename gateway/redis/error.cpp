#include "gateway/redis/error.hpp"

#include <ostream>
#include <string>

namespace imagegate::redis {
namespace {

std::string_view message_of(error e) noexcept {
    switch (e) {
    case error::not_connected: return "Redis is down; the client is reconnecting";
    case error::too_many_pending: return "too many Redis commands pending on the connection";
    case error::command_too_large: return "Redis command too large";
    case error::shutting_down: return "the Redis client is shutting down";
    case error::cancelled: return "the Redis operation was cancelled by its caller";
    case error::timeout: return "the Redis operation passed its deadline";
    case error::connect_timeout: return "connecting to Redis passed connect_timeout";
    case error::pipeline_stalled:
        return "the oldest Redis reply was overdue by op_timeout; connection closed";
    case error::resolve_failed: return "the Redis host name did not resolve";
    case error::connect_failed: return "TCP connect to Redis failed";
    case error::tls_failed: return "TLS with Redis failed (handshake or verification)";
    case error::auth_failed: return "Redis refused AUTH (user or password)";
    case error::select_failed: return "Redis refused SELECT";
    case error::handshake_failed: return "Redis did not answer PING with PONG";
    case error::connection_lost: return "the Redis connection was closed or reset";
    case error::protocol_error: return "Redis sent malformed or unexpected RESP";
    case error::bulk_too_large: return "a Redis bulk string exceeded max_bulk_bytes";
    case error::array_too_large: return "a Redis array exceeded max_array_elements";
    case error::nesting_too_deep: return "Redis arrays nested deeper than max_depth";
    case error::reply_too_large: return "a Redis reply exceeded max_reply_bytes";
    }
    return "unknown Redis client error";
}

class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "imagegate.redis"; }
    std::string message(int ev) const override {
        return std::string(message_of(static_cast<error>(ev)));
    }
};

}  // namespace

const boost::system::error_category& redis_category() noexcept {
    static const category instance;
    return instance;
}

std::string_view to_string(error e) noexcept {
    switch (e) {
    case error::not_connected: return "not_connected";
    case error::too_many_pending: return "too_many_pending";
    case error::command_too_large: return "command_too_large";
    case error::shutting_down: return "shutting_down";
    case error::cancelled: return "cancelled";
    case error::timeout: return "timeout";
    case error::connect_timeout: return "connect_timeout";
    case error::pipeline_stalled: return "pipeline_stalled";
    case error::resolve_failed: return "resolve_failed";
    case error::connect_failed: return "connect_failed";
    case error::tls_failed: return "tls_failed";
    case error::auth_failed: return "auth_failed";
    case error::select_failed: return "select_failed";
    case error::handshake_failed: return "handshake_failed";
    case error::connection_lost: return "connection_lost";
    case error::protocol_error: return "protocol_error";
    case error::bulk_too_large: return "bulk_too_large";
    case error::array_too_large: return "array_too_large";
    case error::nesting_too_deep: return "nesting_too_deep";
    case error::reply_too_large: return "reply_too_large";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, error e) { return os << to_string(e); }

}  // namespace imagegate::redis
