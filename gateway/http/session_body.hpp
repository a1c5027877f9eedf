// Request bodies on a session (internal to gateway/http): whether the route takes the body
// the head announces, the `Expect: 100-continue` answer, and reading the whole body into a
// buffer under its own deadline, leaving pipelined bytes for the next request.
#pragma once

#include "gateway/core/errc.hpp"
#include "gateway/core/net.hpp"
#include "gateway/http/router.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string_view>

namespace imagegate::gateway::detail {

namespace beast = boost::beast;
using tcp = asio::ip::tcp;

/// Why a body announced by `parser` is refused before any of it is read, given the route it
/// was routed to (null: none). Every refusal closes the connection: the unread body would
/// otherwise be parsed as the next request.
std::optional<errc> refuse_body(const router::decision& d,
                                const http::request_parser<http::empty_body>& parser);

/// The answer to a failed body read: 413, 408 or 400; nothing when the connection ended
/// (EOF, reset, closed by stop): nobody is left to read an answer.
std::optional<errc> classify_body_error(const boost::system::error_code& ec);

/// The client waits for `100 Continue` before sending the body (RFC 9110 §10.1.1).
bool expects_continue(const http::request_parser<http::empty_body>& parser);

/// The body deadline: when it passes, the session's socket is cancelled (not closed, so a 408
/// can still be written) and fired() turns true. Ends (and never touches the socket again)
/// when destroyed. Used on the session's executor only.
class body_deadline {
public:
    body_deadline(tcp::socket& socket, std::chrono::steady_clock::time_point at);
    ~body_deadline();
    body_deadline(const body_deadline&) = delete;
    body_deadline& operator=(const body_deadline&) = delete;
    bool fired() const noexcept;

    struct state;  // shared with the timer's completion handler

private:
    std::shared_ptr<state> state_;
};

/// Reads the rest of the body `parser` (converted from the head parser, body_limit set)
/// announced: what is buffered first, then from `stream` until the parser is done. Sends
/// `100 Continue` first when `send_continue`. Errors: http::error::body_limit (413),
/// beast::error::timeout when `deadline` passed (408), parse errors (400), and the
/// connection's own end (EOF, reset: nobody to answer). On success the bytes after the body
/// stay in `buffer`: they are the next request.
template <class Stream>
asio::awaitable<boost::system::error_code> read_body(
    Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::string_body>& parser,
    bool send_continue, std::chrono::steady_clock::time_point deadline,
    std::chrono::milliseconds write_timeout) {
    auto& lowest = beast::get_lowest_layer(stream);
    if (send_continue) {
        static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
        lowest.expires_after(write_timeout);
        auto [ec, n] = co_await asio::async_write(
            stream, asio::buffer(continue_line.data(), continue_line.size()), use_nothrow);
        if (ec) {
            co_return ec;
        }
    }
    // The stream's own expiry closes the socket; this deadline must leave it open for a 408.
    lowest.expires_never();
    const body_deadline guard(lowest.socket(), deadline);
    parser.eager(true);
    for (;;) {
        while (buffer.size() > 0 && !parser.is_done()) {
            boost::system::error_code ec;
            const std::size_t used = parser.put(buffer.data(), ec);
            buffer.consume(used);
            if (ec == http::error::need_more) {
                break;
            }
            if (ec) {
                co_return ec;
            }
            if (used == 0) {
                break;
            }
        }
        if (parser.is_done()) {
            co_return boost::system::error_code{};
        }
        if (buffer.size() >= buffer.max_size()) {
            co_return http::make_error_code(http::error::buffer_overflow);  // a huge chunk line
        }
        const std::size_t room = std::min<std::size_t>(4096, buffer.max_size() - buffer.size());
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(room), use_nothrow);
        if (guard.fired()) {
            co_return beast::error::timeout;
        }
        if (ec) {
            co_return ec == asio::error::eof ? http::make_error_code(http::error::partial_message)
                                             : ec;
        }
        buffer.commit(n);
    }
}

}  // namespace imagegate::gateway::detail
