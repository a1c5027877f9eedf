// Streaming between a handler and its session: the request body as a source the handler pulls
// from (bounded chunks, the route's limits and the body deadline applied as bytes arrive) and
// the reply as a head plus body chunks written as the handler gets them.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace imagegate::gateway {

/// A request body the handler reads while it arrives (routes with body_policy::streaming).
/// Owned by the session; valid while the handler runs. Used by the handler's coroutine only.
class body_source {
public:
    virtual ~body_source() = default;
    /// The next bytes of the body (chunked coding removed), valid until the next call; an
    /// empty span once the body is complete (and on every later call). Errors: errc
    /// payload_too_large (over the route's limit), request_timeout (the body deadline
    /// passed), bad_request (broken chunk framing), or the connection's own end (EOF, reset:
    /// nobody is left to answer). After an error every call returns it again.
    virtual asio::awaitable<boost::system::result<std::span<const char>>> next() = 0;
    /// The declared Content-Length; nothing for a chunked body.
    virtual std::optional<std::uint64_t> content_length() const noexcept = 0;
    /// The whole body was read.
    virtual bool done() const noexcept = 0;
};

/// A reply the handler writes piece by piece: the head, then the body as it comes. Owned by
/// the session; valid while the handler runs. Used by the handler's coroutine only.
/// Once start() was called the session writes nothing of its own for this request: the
/// handler's returned reply only names the status, route and Cache-Status for the log, and
/// `reply::close` (set it when the body could not be completed) ends the connection, which is
/// how a client tells a cut answer from a whole one. Never a second response.
class reply_stream {
public:
    virtual ~reply_stream() = default;
    /// Writes the status line, `header_lines` (CRLF-terminated lines, no framing and no
    /// Connection header: this adds them), the framing (Content-Length when `length` is
    /// given, else chunked; none for 1xx, 204 and 304), X-Request-Id and Connection. False
    /// when the write failed (the client is gone).
    virtual asio::awaitable<bool> start(unsigned status, std::string_view header_lines,
                                        std::optional<std::uint64_t> length) = 0;
    /// Writes body bytes (chunk-framed when chunked; dropped for HEAD and bodiless statuses).
    /// False when the write failed or would exceed the announced Content-Length.
    virtual asio::awaitable<bool> write(std::span<const char> bytes) = 0;
    /// Ends the body (the last chunk when chunked). False when the write failed or fewer bytes
    /// than the announced Content-Length were written.
    virtual asio::awaitable<bool> finish() = 0;
    virtual bool started() const noexcept = 0;
    /// Bytes written to the client so far (head included).
    virtual std::uint64_t bytes_written() const noexcept = 0;
};

}  // namespace imagegate::gateway
