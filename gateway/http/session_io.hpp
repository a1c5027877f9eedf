// Moving bytes on a session's stream: reading one request head through the head rules
// (request_head.hpp) and writing a reply as one buffer sequence, directly on a plain socket
// when the kernel takes it all. Internal to gateway/http; the small functions are inline
// because they run on every cache hit.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/http/reply.hpp"
#include "gateway/http/request_head.hpp"
#include "gateway/http/server_state.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>

namespace imagegate::gateway::detail {

// The session code below is written once for any Stream whose lowest layer is a
// beast::tcp_stream (deadlines live there) and instantiated for exactly two types in
// session.cpp: beast::tcp_stream (plain) and ssl::stream<beast::tcp_stream> (TLS). The plain
// instantiation is the code that ran before TLS existed: no wrapper, no runtime branch.

using reply_buffers = std::array<asio::const_buffer, 6>;

// `r` and the request's id as one buffer sequence (headers only for HEAD).
inline reply_buffers buffers_of(const reply& r, std::string_view id, bool head_only, bool close) {
    const std::string_view conn = close ? connection_close : connection_keep_alive;
    const std::string_view body = head_only ? std::string_view{} : r.body();
    return {asio::buffer(r.prepared_head.data(), r.prepared_head.size()),
            asio::buffer(r.head.data(), r.head.size()),
            asio::buffer(request_id_header.data(), request_id_header.size()),
            asio::buffer(id.data(), id.size()),
            asio::buffer(conn.data(), conn.size()),
            asio::buffer(body.data(), body.size())};
}

// Plain connections: an answer almost always fits the socket's send buffer, so one
// non-blocking sendmsg, with no asynchronous operation, no deadline timer armed and
// cancelled, no completion handler and no coroutine frame. Returns the bytes the kernel
// took, or nothing on an error. The socket is non-blocking (run_plain_session).
inline std::optional<std::size_t> write_now(beast::tcp_stream& stream,
                                            const reply_buffers& buffers) {
    boost::system::error_code ec;
    const std::size_t sent = stream.socket().write_some(buffers, ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        return std::nullopt;
    }
    return sent;
}

// Writes `buffers` from byte `sent` on under the write deadline (all of it over TLS, the rest
// of what write_now left on a plain connection). Returns all bytes written, or 0. Over TLS,
// Asio linearises the buffer sequence into one record (up to 8 KiB).
template <class Stream>
asio::awaitable<std::size_t> write_rest(Stream& stream, reply_buffers buffers, std::size_t sent,
                                        std::chrono::milliseconds timeout) {
    beast::buffers_suffix<reply_buffers> rest(buffers);
    rest.consume(sent);
    beast::get_lowest_layer(stream).expires_after(timeout);
    auto [ec, n] = co_await asio::async_write(stream, rest, use_nothrow);
    if (ec) {
        co_return 0;
    }
    co_return sent + n;
}

// Feeds the buffered bytes to `parser` (put_head: Beast's parser plus our raw-head checks):
// the result once the head is complete or wrong, nothing while more bytes are needed. A
// plain function, so a head that arrived whole (the usual case) costs no coroutine frame.
// What the parser took is consumed even when it asks for more: Beast parses a complete
// request line (and complete fields) as soon as it sees them, so handing those bytes over
// again would parse the request line as a field.
inline std::optional<boost::system::error_code> parse_buffered(
    beast::flat_buffer& buffer, http::request_parser<http::empty_body>& parser) {
    while (buffer.size() > 0) {
        boost::system::error_code ec;
        const std::size_t used = put_head(parser, buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) {
            return std::nullopt;
        }
        if (ec || parser.is_header_done()) {
            return ec;
        }
    }
    return std::nullopt;
}

// Reads one request head into `parser`, feeding it from `buffer` ourselves so the raw head
// bytes can be checked before they are consumed. Beast's parser takes a head only once it is
// complete, so the bytes consumed by a successful put() are exactly the head.
template <class Stream>
asio::awaitable<boost::system::error_code> read_header(
    Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::empty_body>& parser) {
    for (;;) {
        if (auto done = parse_buffered(buffer, parser)) {
            co_return *done;
        }
        if (buffer.size() >= buffer.max_size()) {
            co_return http::make_error_code(http::error::header_limit);
        }
        const std::size_t room = std::min<std::size_t>(4096, buffer.max_size() - buffer.size());
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(room), use_nothrow);
        if (ec) {
            // EOF before any byte of a request is a clean close, mid-head a partial message.
            if (ec == asio::error::eof) {
                co_return parser.got_some() || buffer.size() > 0
                    ? http::make_error_code(http::error::partial_message)
                    : http::make_error_code(http::error::end_of_stream);
            }
            co_return ec;
        }
        buffer.commit(n);
    }
}

}  // namespace imagegate::gateway::detail
