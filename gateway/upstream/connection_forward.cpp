// A forwarded call on one connection: the request head and the client's body written as the
// body arrives, the final answer's head (interim heads skipped) and body handed to a sink as
// they are read. See connection::forward in connection.hpp.
#include "gateway/upstream/connection.hpp"

#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/upstream/forward_headers.hpp"

#include <boost/asio/write.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <array>
#include <charconv>

namespace imagegate::upstream {

namespace {

/// Response body bytes handed to the sink per read at most.
constexpr std::size_t forward_chunk_bytes = 16 * 1024;

using response_parser = http::response_parser<http::buffer_body>;

template <class Stream>
asio::awaitable<boost::system::error_code> write_piece(Stream& stream, std::span<const char> bytes,
                                                       bool chunked) {
    if (!chunked) {
        auto [ec, n] = co_await asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()),
                                                  use_nothrow);
        (void)n;
        co_return ec;
    }
    std::array<char, 20> size_line{};
    auto [end, tec] =
        std::to_chars(size_line.data(), size_line.data() + size_line.size() - 2, bytes.size(), 16);
    (void)tec;
    *end++ = '\r';
    *end++ = '\n';
    static constexpr std::string_view crlf = "\r\n";
    const std::array<asio::const_buffer, 3> pieces{
        asio::buffer(size_line.data(), static_cast<std::size_t>(end - size_line.data())),
        asio::buffer(bytes.data(), bytes.size()), asio::buffer(crlf.data(), crlf.size())};
    auto [ec, n] = co_await asio::async_write(stream, pieces, use_nothrow);
    (void)n;
    co_return ec;
}

}  // namespace

asio::awaitable<boost::system::result<forward_outcome, failure>> connection::forward(
    std::string_view head, forward_body* body, bool chunked, bool head_request, forward_sink& sink,
    clock::time_point deadline) {
    IMAGEGATE_CHECK(runs_on_this_worker(ex_), "a forwarded call runs on its connection's worker");
    // The same checks and the same one deadline as exchange(); the client's body arriving
    // slowly spends it too, so the caller sizes it for both.
    if (auto refused = begin_exchange(deadline)) {
        co_return *refused;
    }
    if (tls_) {
        co_return co_await forward_on(*tls_, head, body, chunked, head_request, sink);
    }
    co_return co_await forward_on(*plain_, head, body, chunked, head_request, sink);
}

template <class Stream>
asio::awaitable<boost::system::result<forward_outcome, failure>> connection::forward_on(
    Stream& stream, std::string_view head, forward_body* body, bool chunked, bool head_request,
    forward_sink& sink) {
    const bool reused = requests_served() > 0;
    const auto started = clock::now();
    {
        auto [ec, n] =
            co_await asio::async_write(stream, asio::buffer(head.data(), head.size()), use_nothrow);
        (void)n;
        if (ec) {
            close();
            co_return failure{ec, phase::write, false};
        }
    }
    while (body != nullptr) {
        auto got = co_await body->next();
        if (!got) {
            // The client's body failed (over its limit, too slow, the client left): the
            // upstream must not take what arrived for a whole request.
            close();
            co_return failure{got.error(), phase::write, false};
        }
        if (got->empty()) {
            break;
        }
        const auto ec = co_await write_piece(stream, *got, chunked);
        if (ec) {
            close();
            co_return failure{ec, phase::write, false};
        }
    }
    if (body != nullptr && chunked) {
        static constexpr std::string_view last = "0\r\n\r\n";
        auto [ec, n] =
            co_await asio::async_write(stream, asio::buffer(last.data(), last.size()), use_nothrow);
        (void)n;
        if (ec) {
            close();
            co_return failure{ec, phase::write, false};
        }
    }

    head_sequence heads(opts_->header_limit);
    std::optional<response_parser> parser;
    for (;;) {
        parser.emplace();
        parser->header_limit(heads.header_limit());
        parser->body_limit(boost::none);  // bounded by the deadline and the sink, not held
        parser->skip(head_request);
        auto [ec, n] = co_await http::async_read_header(stream, buffer_, *parser, use_nothrow);
        if (ec) {
            const bool started_answer =
                heads.interim_responses() > 0 || parser->got_some() || buffer_.size() > 0;
            close();
            co_return failure{ec, phase::read, started_answer};
        }
        const head_kind kind = heads.on_head(parser->get().result_int(), n);
        if (kind == head_kind::final_response) {
            break;
        }
        if (kind == head_kind::refused) {
            close();
            co_return failure{heads.error(), phase::read, true};
        }
    }

    forward_outcome out;
    out.status = parser->get().result_int();
    out.fresh_connection = !reused;
    {
        forward_head fh = forward_response_head(parser->get().base());
        fh.status = out.status;
        if (!parser->chunked() && parser->content_length()) {
            fh.content_length = *parser->content_length();
        }
        if (!co_await sink.on_head(fh)) {
            close();
            out.stopped_by_sink = true;
            co_return out;
        }
    }
    std::array<char, forward_chunk_bytes> chunk{};
    while (!parser->is_done()) {
        auto& b = parser->get().body();
        b.data = chunk.data();
        b.size = chunk.size();
        auto [ec, n] = co_await http::async_read_some(stream, buffer_, *parser, use_nothrow);
        (void)n;
        const std::size_t filled = chunk.size() - b.size;
        b.data = nullptr;
        if (ec == http::error::need_buffer) {
            ec = {};
        }
        if (ec) {
            // Cut, reset, over the deadline, or a close-delimited body without close_notify:
            // the client gets what arrived and a closed connection, never a whole answer.
            close();
            out.latency = clock::now() - started;
            co_return out;
        }
        if (filled > 0) {
            out.body_bytes += filled;
            if (!co_await sink.on_body(std::span<const char>(chunk.data(), filled))) {
                close();
                out.stopped_by_sink = true;
                out.latency = clock::now() - started;
                co_return out;
            }
        }
    }
    lowest().expires_never();
    out.latency = clock::now() - started;
    out.complete = true;
    const bool trailing = after_answer(parser->keep_alive(), parser->need_eof());
    out.clean = !parser->need_eof() && !trailing;
    co_return out;
}

}  // namespace imagegate::upstream
