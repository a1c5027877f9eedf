// The session's side of streaming (internal to gateway/http): a request body read into bounded
// chunks as the handler pulls it, and a reply written as a head and body pieces, over a
// session's stream. The interfaces handlers see are in stream.hpp.
#pragma once

#include "gateway/http/session_body.hpp"
#include "gateway/http/stream.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <optional>
#include <string>

namespace imagegate::gateway::detail {

/// Bytes handed to the handler per pull: one TLS record's plaintext.
inline constexpr std::size_t body_chunk_bytes = 16 * 1024;

/// A streamed request body on a session's stream. Lives in the session's frame for one
/// request; used on the session's executor only.
template <class Stream>
class streamed_body final : public body_source {
public:
    /// `head` is the head parser (header done); its body limit becomes `limit`.
    streamed_body(Stream& stream, beast::flat_buffer& buffer,
                  http::request_parser<http::empty_body>&& head, std::uint64_t limit,
                  bool send_continue, std::chrono::steady_clock::time_point deadline,
                  std::chrono::milliseconds write_timeout)
        : stream_(stream),
          buffer_(buffer),
          parser_(std::move(head)),
          send_continue_(send_continue),
          deadline_(deadline),
          write_timeout_(write_timeout) {
        parser_.body_limit(limit);
        parser_.eager(true);
        done_ = parser_.is_done();
    }

    const http::request<http::buffer_body>& message() const noexcept { return parser_.get(); }

    asio::awaitable<boost::system::result<std::span<const char>>> next() override {
        if (failed_) {
            co_return failed_;
        }
        if (done_) {
            co_return std::span<const char>{};
        }
        auto& lowest = beast::get_lowest_layer(stream_);
        if (send_continue_) {
            send_continue_ = false;
            static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
            lowest.expires_after(write_timeout_);
            auto [ec, n] = co_await asio::async_write(
                stream_, asio::buffer(continue_line.data(), continue_line.size()), use_nothrow);
            (void)n;
            if (ec) {
                co_return fail(ec);
            }
        }
        if (!guard_) {
            // The stream's own expiry closes the socket; this deadline must leave it open for
            // a 408. It runs from the first pull to the body's end, across pulls.
            lowest.expires_never();
            guard_.emplace(lowest.socket(), deadline_);
        }
        for (;;) {
            if (guard_->fired()) {
                co_return fail(beast::error::timeout);
            }
            while (buffer_.size() > 0 && !parser_.is_done()) {
                auto& body = parser_.get().body();
                body.data = chunk_.data();
                body.size = chunk_.size();
                boost::system::error_code ec;
                const std::size_t used = parser_.put(buffer_.data(), ec);
                buffer_.consume(used);
                const std::size_t filled = chunk_.size() - body.size;
                body.data = nullptr;
                if (ec == http::error::need_buffer || ec == http::error::need_more) {
                    ec = {};
                }
                if (ec) {
                    co_return fail(ec);
                }
                if (parser_.is_done()) {
                    finish();
                }
                if (filled > 0) {
                    co_return std::span<const char>(chunk_.data(), filled);
                }
                if (used == 0) {
                    break;
                }
            }
            if (parser_.is_done()) {
                finish();
                co_return std::span<const char>{};
            }
            if (buffer_.size() >= buffer_.max_size()) {
                co_return fail(http::error::buffer_overflow);  // a huge chunk line
            }
            const std::size_t room =
                std::min<std::size_t>(body_chunk_bytes, buffer_.max_size() - buffer_.size());
            auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(room), use_nothrow);
            if (guard_->fired()) {
                co_return fail(beast::error::timeout);
            }
            if (ec) {
                co_return fail(ec == asio::error::eof ? http::error::partial_message : ec);
            }
            buffer_.commit(n);
        }
    }

    std::optional<std::uint64_t> content_length() const noexcept override {
        if (parser_.chunked()) {
            return std::nullopt;
        }
        const auto n = parser_.content_length();
        return n ? std::optional<std::uint64_t>(*n) : std::nullopt;
    }
    bool done() const noexcept override { return done_; }
    /// The body ended in an error (the connection must close).
    bool failed() const noexcept { return static_cast<bool>(failed_); }
    /// The client waits for `100 Continue`, which no pull has sent yet.
    bool awaiting_continue() const noexcept { return send_continue_; }

private:
    boost::system::error_code fail(boost::system::error_code ec) {
        guard_.reset();
        if (const auto e = classify_body_error(ec)) {
            failed_ = make_error_code(*e);
        } else {
            failed_ = ec;
        }
        return failed_;
    }
    void finish() {
        done_ = true;
        guard_.reset();
    }

    Stream& stream_;
    beast::flat_buffer& buffer_;
    http::request_parser<http::buffer_body> parser_;
    bool send_continue_;
    std::chrono::steady_clock::time_point deadline_;
    std::chrono::milliseconds write_timeout_;
    std::optional<body_deadline> guard_;
    std::array<char, body_chunk_bytes> chunk_{};
    boost::system::error_code failed_;
    bool done_ = false;
};

/// The head of a streamed reply: status line, the handler's lines, framing, request id and
/// connection. `chunked`/`length` as the status allows (none for 1xx, 204, 304).
std::string streamed_head(unsigned status, std::string_view header_lines,
                          std::optional<std::uint64_t> length, bool chunked, std::string_view id,
                          bool close);

/// A status whose response never has content (RFC 9110 §6.4.1).
constexpr bool bodiless_status(unsigned status) noexcept {
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/// A reply written piece by piece on a session's stream. Lives in the session's frame for
/// one request; used on the session's executor only.
template <class Stream>
class streamed_reply final : public reply_stream {
public:
    streamed_reply(Stream& stream, std::string_view id, bool head_only, bool close,
                   std::chrono::milliseconds write_timeout)
        : stream_(stream),
          id_(id),
          head_only_(head_only),
          close_(close),
          write_timeout_(write_timeout) {}

    asio::awaitable<bool> start(unsigned status, std::string_view header_lines,
                                std::optional<std::uint64_t> length) override {
        if (started_) {
            co_return false;
        }
        started_ = true;
        no_body_ = head_only_ || bodiless_status(status);
        chunked_ = !bodiless_status(status) && !length;
        if (!bodiless_status(status)) {
            length_ = length;
        }
        const std::string head =
            streamed_head(status, header_lines, length_, chunked_, id_, close_);
        co_return co_await send(asio::buffer(head.data(), head.size()));
    }

    asio::awaitable<bool> write(std::span<const char> bytes) override {
        if (!started_ || broken_ || finished_) {
            co_return false;
        }
        if (bytes.empty() || no_body_) {
            co_return true;
        }
        body_bytes_ += bytes.size();
        if (length_ && body_bytes_ > *length_) {
            broken_ = true;
            co_return false;
        }
        if (!chunked_) {
            co_return co_await send(asio::buffer(bytes.data(), bytes.size()));
        }
        std::array<char, 20> size_line{};
        auto [end, ec] = std::to_chars(size_line.data(), size_line.data() + size_line.size() - 2,
                                       bytes.size(), 16);
        (void)ec;
        *end++ = '\r';
        *end++ = '\n';
        static constexpr std::string_view crlf = "\r\n";
        const std::array<asio::const_buffer, 3> pieces{
            asio::buffer(size_line.data(), static_cast<std::size_t>(end - size_line.data())),
            asio::buffer(bytes.data(), bytes.size()), asio::buffer(crlf.data(), crlf.size())};
        co_return co_await send(pieces);
    }

    asio::awaitable<bool> finish() override {
        if (!started_ || broken_ || finished_) {
            co_return false;
        }
        finished_ = true;
        if (no_body_) {
            co_return true;
        }
        if (length_) {
            co_return body_bytes_ == *length_;
        }
        static constexpr std::string_view last = "0\r\n\r\n";
        co_return co_await send(asio::buffer(last.data(), last.size()));
    }

    bool started() const noexcept override { return started_; }
    std::uint64_t bytes_written() const noexcept override { return written_; }
    /// The reply was started and completely written.
    bool complete() const noexcept { return finished_ && !broken_; }

private:
    template <class Buffers>
    asio::awaitable<bool> send(Buffers buffers) {
        beast::get_lowest_layer(stream_).expires_after(write_timeout_);
        auto [ec, n] = co_await asio::async_write(stream_, buffers, use_nothrow);
        written_ += n;
        if (ec) {
            broken_ = true;
            co_return false;
        }
        co_return true;
    }

    Stream& stream_;
    std::string_view id_;
    bool head_only_;
    bool close_;
    std::chrono::milliseconds write_timeout_;
    bool started_ = false;
    bool no_body_ = false;
    bool chunked_ = false;
    bool broken_ = false;
    bool finished_ = false;
    std::optional<std::uint64_t> length_;
    std::uint64_t body_bytes_ = 0;
    std::uint64_t written_ = 0;
};

}  // namespace imagegate::gateway::detail
