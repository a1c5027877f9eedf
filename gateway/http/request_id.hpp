// X-Request-Id: the client's own id when it is a short token of safe characters, otherwise
// one generated per request without a system call or a shared atomic.
#pragma once

#include <boost/beast/http/fields.hpp>

#include <array>
#include <cstddef>
#include <string_view>

namespace imagegate::gateway {

/// The longest client id kept; a longer one is replaced.
inline constexpr std::size_t max_request_id_bytes = 128;

/// Room for a generated id.
using request_id_buffer = std::array<char, 48>;

/// 1 to max_request_id_bytes characters, each of [A-Za-z0-9._:-]: safe in a header, a log
/// line and a JSON string as it is.
bool is_valid_request_id(std::string_view id) noexcept;

/// A new id in `buf`: "<process prefix>-<thread number>-<counter>", all lower-case hex. The
/// prefix is random per process, the thread number is given out once per thread and the
/// counter is the thread's own, so ids never repeat within a process and are unlikely to
/// across processes. Any thread.
std::string_view generate_request_id(request_id_buffer& buf) noexcept;

/// The request's id: its first X-Request-Id field when valid, else a generated one in `buf`.
/// `headers` may be null (a request whose head could not be parsed). The result points into
/// `headers` or `buf`.
std::string_view request_id_for(const boost::beast::http::fields* headers,
                                request_id_buffer& buf) noexcept;

}  // namespace imagegate::gateway
