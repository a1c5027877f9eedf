#include "gateway/upstream/connection.hpp"

#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/upstream/headers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/throw_exception.hpp>

#include <openssl/ssl.h>

#include <algorithm>
#include <ostream>
#include <variant>

namespace imagegate::upstream {

namespace ssl = asio::ssl;
using namespace asio::experimental::awaitable_operators;

std::string_view to_string(phase p) noexcept {
    switch (p) {
    case phase::resolve: return "resolve";
    case phase::connect: return "connect";
    case phase::handshake: return "handshake";
    case phase::write: return "write";
    case phase::read: return "read";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, phase p) { return os << to_string(p); }

void throw_exception_from_error(const failure& f, const boost::source_location& loc) {
    boost::throw_exception(boost::system::system_error(f.ec, std::string(to_string(f.phase))), loc);
}

errc classify(const failure& f) noexcept {
    if (f.ec == beast::error::timeout) {
        return errc::upstream_timeout;
    }
    switch (f.phase) {
    case phase::resolve:
    case phase::connect: return errc::upstream_connect_failed;
    case phase::handshake: return errc::upstream_tls_failed;
    case phase::write:
    case phase::read:
        if (f.ec == http::error::body_limit) {
            return errc::upstream_too_large;
        }
        return errc::upstream_protocol_error;
    }
    return errc::upstream_protocol_error;
}

tls_session_cache::~tls_session_cache() {
    if (session_ != nullptr) {
        SSL_SESSION_free(session_);
    }
}

void tls_session_cache::offer(SSL* ssl) const {
    const std::lock_guard lock(mu_);
    if (session_ != nullptr) {
        // Takes its own reference; a session the server no longer knows just means a full
        // handshake.
        SSL_set_session(ssl, session_);
    }
}

void tls_session_cache::keep(SSL* ssl) {
    SSL_SESSION* live = SSL_get1_session(ssl);
    if (live == nullptr) {
        return;
    }
    // A copy: OpenSSL marks a connection's own session not resumable when the connection
    // is freed without close_notify, which is how connection::close() ends every connection.
    SSL_SESSION* s = SSL_SESSION_is_resumable(live) == 1 ? SSL_SESSION_dup(live) : nullptr;
    SSL_SESSION_free(live);
    if (s == nullptr) {
        return;
    }
    SSL_SESSION* old = nullptr;
    {
        const std::lock_guard lock(mu_);
        old = session_;
        session_ = s;
    }
    if (old != nullptr) {
        SSL_SESSION_free(old);
    }
}

connection::connection(asio::any_io_executor ex, std::shared_ptr<const connection_options> opts)
    : ex_(std::move(ex)), opts_(std::move(opts)), resolver_(ex_) {
    if (opts_->tls) {
        tls_.emplace(ex_, *opts_->tls);
    } else {
        plain_.emplace(ex_);
    }
    // Beast 1.81 bounds neither chunk extensions nor trailers: without a cap on what one
    // read may buffer, a hostile upstream could make us hold bandwidth x request_timeout
    // bytes per connection around max_body_bytes. Bodies still stream through: the parser
    // consumes each read. (Found by reading the code while writing tests/fuzz.)
    buffer_.max_size(static_cast<std::size_t>(opts_->header_limit) + 64 * 1024);
    // Room for a whole TLS record's plaintext (16 KiB) from the start: Beast sizes each read
    // by the buffer's free capacity, and a buffer grown from nothing took a typical answer
    // (a 1-2 KiB record) in two reads of the TLS stream, four SSL_read calls instead of two.
    buffer_.reserve(std::min<std::size_t>(buffer_.max_size(), 16 * 1024));
}

beast::tcp_stream& connection::lowest() noexcept {
    return tls_ ? beast::get_lowest_layer(*tls_) : *plain_;
}

asio::awaitable<boost::system::result<void, failure>> connection::connect(
    clock::time_point deadline) {
    using result_type = boost::system::result<void, failure>;
    const auto fail = [this](boost::system::error_code ec, phase p) -> result_type {
        close();
        return failure{ec, p, false};
    };
    IMAGEGATE_CHECK(runs_on_this_worker(ex_), "a connection connects on its own worker");
    if (closed_) {
        co_return fail(asio::error::operation_aborted, phase::resolve);
    }

    // The resolver has no stream expiry, so it races a timer at the same deadline that
    // later bounds connect and handshake: one budget for the three steps.
    asio::steady_timer resolve_timer(ex_);
    resolve_timer.expires_at(deadline);
    auto resolved =
        co_await (resolver_.async_resolve(opts_->host, std::to_string(opts_->port), use_nothrow) ||
                  resolve_timer.async_wait(use_nothrow));
    if (resolved.index() == 1) {
        co_return fail(beast::error::timeout, phase::resolve);
    }
    auto [rec, endpoints] = std::get<0>(std::move(resolved));
    if (rec) {
        co_return fail(rec, phase::resolve);
    }
    // close() may have run while we were suspended; a connect would reopen the socket.
    if (closed_) {
        co_return fail(asio::error::operation_aborted, phase::connect);
    }

    lowest().expires_at(deadline);
    auto [cec, endpoint] = co_await lowest().async_connect(endpoints, use_nothrow);
    (void)endpoint;
    if (cec) {
        co_return fail(cec, phase::connect);
    }

    if (tls_) {
        const std::string& name = opts_->server_name.empty() ? opts_->host : opts_->server_name;
        // SNI selects the certificate on shared front ends (Cloudflare serves many names
        // per address). RFC 6066 §3 forbids address literals in SNI.
        if (!is_ip_literal(name) &&
            SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str()) != 1) {
            co_return fail(boost::system::error_code(static_cast<int>(::ERR_get_error()),
                                                     asio::error::get_ssl_category()),
                           phase::handshake);
        }
        // The context verifies the chain; this checks that the chain is for *this* host
        // (RFC 6125). Without it any certificate from a trusted CA would be accepted.
        boost::system::error_code vec;
        tls_->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, vec);
        if (!vec) {
            tls_->set_verify_callback(ssl::host_name_verification(name), vec);
        }
        if (vec) {
            co_return fail(vec, phase::handshake);
        }
        if (opts_->sessions) {
            opts_->sessions->offer(tls_->native_handle());
        }
        // Same deadline re-armed: expiry is per operation on a tcp_stream.
        lowest().expires_at(deadline);
        auto [hec] = co_await tls_->async_handshake(ssl::stream_base::client, use_nothrow);
        if (hec) {
            co_return fail(hec, phase::handshake);
        }
        resumed_.store(SSL_session_reused(tls_->native_handle()) == 1, std::memory_order_relaxed);
    }
    // Parked connections must not carry an armed expiry: it would fire while idle and
    // close the socket, or make the next operation time out at once.
    lowest().expires_never();
    co_return result_type{};
}

asio::awaitable<boost::system::result<response, failure>> connection::exchange(
    std::string_view request, clock::time_point deadline) {
    using result_type = boost::system::result<response, failure>;
    // The stream and its expiry timer are confined to the connection's worker; the caller
    // (client::fetch) runs the exchange inline, so it must already be there.
    IMAGEGATE_CHECK(runs_on_this_worker(ex_), "an exchange runs on its connection's worker");
    reusable_ = false;
    const bool reused = requests_served() > 0;
    if (closed_) {
        co_return failure{asio::error::not_connected, phase::write, false};
    }
    // A connection is handed out only with an empty buffer (see is_reusable).
    buffer_.clear();

    // One deadline for the whole exchange: a slow-loris upstream dripping bytes cannot
    // extend it, unlike a per-read idle timeout.
    lowest().expires_at(deadline);
    const auto started = clock::now();

    boost::system::error_code wec;
    const auto bytes = asio::buffer(request.data(), request.size());
    if (tls_) {
        auto [ec, n] = co_await asio::async_write(*tls_, bytes, use_nothrow);
        wec = ec;
        (void)n;
    } else {
        auto [ec, n] = co_await asio::async_write(*plain_, bytes, use_nothrow);
        wec = ec;
        (void)n;
    }
    if (wec) {
        close();
        co_return failure{wec, phase::write, false};
    }

    response_reader parser;
    parser.header_limit(opts_->header_limit);
    parser.body_limit(opts_->body_limit);

    const auto read_failed = [&](boost::system::error_code ec) -> result_type {
        const bool started_answer = parser.got_some() || buffer_.size() > 0;
        close();
        return failure{ec, phase::read, started_answer};
    };

    // The head first (eager off), then the body: the reader reserves the body once, with
    // the validator's padding, when the head announces its length.
    boost::system::error_code hec;
    if (tls_) {
        auto [ec, n] = co_await http::async_read_header(*tls_, buffer_, parser, use_nothrow);
        hec = ec;
        (void)n;
    } else {
        auto [ec, n] = co_await http::async_read_header(*plain_, buffer_, parser, use_nothrow);
        hec = ec;
        (void)n;
    }
    if (hec) {
        co_return read_failed(hec);
    }

    boost::system::error_code bec;
    if (!parser.is_done()) {
        if (tls_) {
            auto [ec, n] = co_await http::async_read(*tls_, buffer_, parser, use_nothrow);
            bec = ec;
            (void)n;
        } else {
            auto [ec, n] = co_await http::async_read(*plain_, buffer_, parser, use_nothrow);
            bec = ec;
            (void)n;
        }
    }
    // A body delimited by connection close (no Content-Length, not chunked) is complete
    // only on a clean TLS close; without close_notify the read fails with
    // ssl::error::stream_truncated, which lands here as a protocol error: an attacker who
    // can reset TCP cannot make us accept a cut-off body.
    if (bec) {
        co_return read_failed(bec);
    }
    lowest().expires_never();
    const auto finished = clock::now();
    requests_served_.fetch_add(1, std::memory_order_relaxed);
    if (tls_ && opts_->sessions && !session_kept_) {
        // Once per connection, after its first response: a TLS 1.3 server's session tickets
        // have arrived by now.
        session_kept_ = true;
        opts_->sessions->keep(tls_->native_handle());
    }

    // Reusable only if the message was self-delimited, both sides keep the connection
    // (RFC 9112 §9.3), and the peer sent nothing beyond this response.
    reusable_ = parser.keep_alive() && !parser.need_eof() && buffer_.size() == 0;
    if (!reusable_) {
        close();
    }

    response out;
    response_head head = parser.take_head();
    out.status = head.status;
    out.content_type = std::move(head.content_type);
    out.retry_after = std::move(head.retry_after);
    out.ratelimit = std::move(head.ratelimit);
    out.ratelimit_policy = std::move(head.ratelimit_policy);
    out.latency = finished - started;
    out.reused_connection = reused;
    out.body = parser.take_body();
    co_return out;
}

void connection::close() noexcept {
    // No TLS close_notify (async_shutdown) on purpose. close_notify protects a reader that
    // relies on end-of-stream for framing against truncation; we never do on a connection
    // we close ourselves, and every response we accept is framed by Content-Length or
    // chunked encoding (or, for close-delimited bodies, by a verified close_notify from the
    // peer, see exchange()). Waiting for the peer's close_notify would only let a slow or
    // hostile upstream hold our socket and coroutine; sending ours gains nothing the server
    // relies on (HTTP servers treat a missing close_notify as a normal close).
    closed_ = true;
    reusable_ = false;
    resolver_.cancel();
    lowest().close();
}

}  // namespace imagegate::upstream
