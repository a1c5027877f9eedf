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

std::ostream& operator<<(std::ostream& os, const exchange_facts& f) {
    return os << "{fresh_connection=" << f.fresh_connection << " framed=" << f.framed
              << " trailing_bytes=" << f.trailing_bytes
              << " interim_responses=" << f.interim_responses << "}";
}

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

// Why an answer belongs to the request that produced it. HTTP/1.1 has no request ids: on
// one connection the n-th response answers the n-th request (RFC 9112 §9.3). We send one
// request at a time, so an answer is ours if (a) every response the upstream sent before our
// request was consumed by the exchange it belonged to, and (b) no response meant for nobody
// is read in its place. The client keeps (a) and checks (b) as far as bytes can tell:
//  - interim 1xx heads are read and skipped inside the exchange they belong to, under its
//    one deadline, bounded in count and bytes (head_sequence); 101 is refused;
//  - a connection is pooled only if its response was framed (Content-Length, chunked or a
//    status without content, never close-delimited), nothing beyond it had arrived (our
//    buffer, the TLS layers, the socket), and the exchange completed (may_reuse);
//  - an idle connection with unread bytes or a peer close is discarded when the pool is
//    about to lend it, and again right before our request is written (is_idle_and_open);
//    an exchange that timed out or failed closes its connection.
// What remains: bytes the upstream sends without being asked that arrive after the last
// check are read as the head of our answer. That window is short but not zero: from the
// check to our request reaching the upstream, plus about a round trip after the previous
// answer for bytes sent right behind it (which TCP would otherwise hold at the upstream until
// our next request; see acknowledge_now). Such bytes must still parse as one framed response
// and pass the caller's validation: a 200 is stored only if its result.id is the id we asked
// for, so a stray record of another image is refused (502, not stored). A stray for the same
// id, or a stray error envelope, cannot be told from our answer; our own answer then arrives
// as unread bytes and the connection is discarded at its next check. So only an upstream
// that sends responses nobody asked for (a bug, or a lie, and a lying upstream can answer
// anything anyway) can cross answers, and only within that window: exchange_facts tells the
// caller which answers are certain (the first on a fresh connection), so a proof of a
// credential never has to rest on one that is not. A fresh connection is not checked before
// its first request: a TLS 1.3 server's session tickets may be waiting there, and an upstream
// that answers before it is asked is lying, which no framing can catch.
asio::awaitable<boost::system::result<response, failure>> connection::exchange(
    std::string_view request, clock::time_point deadline) {
    using result_type = boost::system::result<response, failure>;
    // The stream and its expiry timer are confined to the connection's worker; the caller
    // (client::fetch) runs the exchange inline, so it must already be there.
    IMAGEGATE_CHECK(runs_on_this_worker(ex_), "an exchange runs on its connection's worker");
    const bool reused = requests_served() > 0;
    if (auto refused = begin_exchange(deadline)) {
        co_return *refused;
    }
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

    head_sequence heads(opts_->header_limit);
    // Beast's parser takes a 1xx as a complete message without a body; each head gets a
    // parser of its own, reading on from the bytes the previous one left in buffer_.
    std::optional<response_reader> parser;
    const auto read_failed = [&](boost::system::error_code ec) -> result_type {
        const bool started_answer =
            heads.interim_responses() > 0 || (parser && parser->got_some()) || buffer_.size() > 0;
        close();
        return failure{ec, phase::read, started_answer};
    };

    // The heads first (eager off), then the body: the reader reserves the body once, with
    // the validator's padding, when the head announces its length.
    for (;;) {
        parser.emplace();
        parser->header_limit(heads.header_limit());
        parser->body_limit(opts_->body_limit);
        boost::system::error_code hec;
        std::size_t head_bytes = 0;
        if (tls_) {
            auto [ec, n] = co_await http::async_read_header(*tls_, buffer_, *parser, use_nothrow);
            hec = ec;
            head_bytes = n;
        } else {
            auto [ec, n] = co_await http::async_read_header(*plain_, buffer_, *parser, use_nothrow);
            hec = ec;
            head_bytes = n;
        }
        if (hec) {
            co_return read_failed(hec);
        }
        const head_kind kind = heads.on_head(parser->head().status, head_bytes);
        if (kind == head_kind::final_response) {
            break;
        }
        if (kind == head_kind::refused) {
            co_return read_failed(heads.error());
        }
    }

    boost::system::error_code bec;
    if (!parser->is_done()) {
        if (tls_) {
            auto [ec, n] = co_await http::async_read(*tls_, buffer_, *parser, use_nothrow);
            bec = ec;
            (void)n;
        } else {
            auto [ec, n] = co_await http::async_read(*plain_, buffer_, *parser, use_nothrow);
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
    const bool trailing = after_answer(parser->keep_alive(), parser->need_eof());

    response out;
    out.facts = {.fresh_connection = !reused,
                 .framed = !parser->need_eof(),
                 .trailing_bytes = trailing,
                 .interim_responses = heads.interim_responses()};
    response_head head = parser->take_head();
    out.status = head.status;
    out.content_type = std::move(head.content_type);
    out.retry_after = std::move(head.retry_after);
    out.ratelimit = std::move(head.ratelimit);
    out.ratelimit_policy = std::move(head.ratelimit_policy);
    out.latency = finished - started;
    out.reused_connection = reused;
    out.body = parser->take_body();
    co_return out;
}

std::optional<failure> connection::begin_exchange(clock::time_point deadline) {
    reusable_ = false;
    const bool reused = requests_served() > 0;
    if (closed_) {
        return failure{asio::error::not_connected, phase::write, false};
    }
    // A pooled connection had nothing unread when it was parked (may_reuse) and when it was
    // lent; this is the last look before our request makes whatever arrives "the answer".
    if (reused && !is_idle_and_open()) {
        close();
        return failure{make_error_code(framing_error::unread_bytes_before_request), phase::write,
                       false};
    }
    // A connection is handed out only with an empty buffer (see may_reuse).
    buffer_.clear();
    // One deadline for the whole exchange: a slow-loris upstream dripping bytes cannot
    // extend it, unlike a per-read idle timeout.
    lowest().expires_at(deadline);
    return std::nullopt;
}

bool connection::after_answer(bool keep_alive, bool need_eof) {
    requests_served_.fetch_add(1, std::memory_order_relaxed);
    if (tls_ && opts_->sessions && !session_kept_) {
        // Once per connection, after its first response: a TLS 1.3 server's session tickets
        // have arrived by now.
        session_kept_ = true;
        opts_->sessions->keep(tls_->native_handle());
    }

    // A peer that sends more than its answer usually sends it right behind it, and TCP then
    // holds those bytes at the peer (Nagle) until our ACK, which Linux delays to ride on our
    // next request: they would arrive after every check, as that request's answer. ACK now,
    // so they follow within a round trip and the checks below or the next lend see them.
    acknowledge_now();
    // Anything received beyond the response makes the connection unusable: it would be read
    // as the next request's answer. HTTP bytes in our buffer are certainly more than we asked
    // for; what waits below (a TLS record, socket bytes) may also be a close_notify, so it is
    // decrypted only in that rare case, to tell the caller which it was.
    bool trailing = buffer_.size() > 0;
    const bool unread = trailing || has_unread_beyond_buffer();
    if (unread && !trailing) {
        trailing = read_application_byte();
    }
    reusable_ =
        may_reuse({.keep_alive = keep_alive, .need_eof = need_eof, .trailing_bytes = unread});
    if (!reusable_) {
        close();
    }
    return trailing;
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
