// The test client runs each call as a coroutine on a private io_context and blocks on it:
// Beast's tcp_stream deadlines only apply to asynchronous operations, and the per-call
// timeout must hold even when the server hangs.
#include "tests/support/http_client.hpp"

#include "gateway/core/net.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace imagegate::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using boost::system::system_error;

namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

void throw_if(const error_code& ec, const char* what) {
    if (ec) {
        throw system_error(ec, what);
    }
}

bool is_ip_literal(const std::string& host) {
    error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

}  // namespace

std::string response::header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
        if (iequals(k, name)) {
            return v;
        }
    }
    return {};
}

std::size_t response::count(std::string_view name) const {
    return static_cast<std::size_t>(
        std::count_if(headers.begin(), headers.end(),
                      [name](const auto& kv) { return iequals(kv.first, name); }));
}

struct connection::impl {
    explicit impl(endpoint e) : ep(std::move(e)), ctx(ssl::context::tls_client) {
        if (ep.server_name.empty()) {
            ep.server_name = ep.host;
        }
        if (ep.tls) {
            if (ep.ca_pem.empty()) {
                throw std::invalid_argument("test client: TLS endpoint without a CA");
            }
            ctx.add_certificate_authority(asio::buffer(ep.ca_pem));
            ctx.set_verify_mode(ssl::verify_peer);
            tls.emplace(ioc, ctx);
        } else {
            plain.emplace(ioc);
        }
    }

    beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

    // Runs one coroutine to completion on the private io_context; rethrows its exception.
    template <class T>
    T run(asio::awaitable<T> task) {
        std::exception_ptr failure;
        std::optional<T> value;
        asio::co_spawn(ioc, std::move(task), [&failure, &value](std::exception_ptr e, T v) {
            failure = e;
            if (!e) {
                value.emplace(std::move(v));
            }
        });
        ioc.restart();
        ioc.run();
        if (failure) {
            open = false;
            error_code ignored;
            lowest().socket().close(ignored);
            std::rethrow_exception(failure);
        }
        return std::move(*value);
    }

    endpoint ep;
    asio::io_context ioc;
    ssl::context ctx;
    std::optional<beast::tcp_stream> plain;
    std::optional<ssl::stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;
    bool open = false;
};

namespace {

using impl_ptr = connection::impl*;

asio::awaitable<bool> connect(impl_ptr p) {
    tcp::resolver resolver(p->ioc);
    auto [rec, results] =
        co_await resolver.async_resolve(p->ep.host, std::to_string(p->ep.port), use_nothrow);
    throw_if(rec, "resolve");
    auto& lowest = p->lowest();
    lowest.expires_after(p->ep.timeout);
    auto [cec, ep] = co_await lowest.async_connect(results, use_nothrow);
    throw_if(cec, "connect");
    if (p->tls) {
        // SNI carries host names only (RFC 6066 §3); an IP literal is checked against IP SANs.
        if (!is_ip_literal(p->ep.server_name) &&
            SSL_set_tlsext_host_name(p->tls->native_handle(), p->ep.server_name.c_str()) != 1) {
            throw std::runtime_error("test client: cannot set SNI");
        }
        p->tls->set_verify_callback(ssl::host_name_verification(p->ep.server_name));
        auto [hec] = co_await p->tls->async_handshake(ssl::stream_base::client, use_nothrow);
        throw_if(hec, "TLS handshake");
    }
    p->open = true;
    co_return true;
}

template <class Stream>
asio::awaitable<response> exchange(impl_ptr p, Stream* stream,
                                   http::request<http::string_body> req) {
    auto& lowest = p->lowest();
    lowest.expires_after(p->ep.timeout);
    auto [wec, wn] = co_await http::async_write(*stream, req, use_nothrow);
    throw_if(wec, "write request");
    http::response_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(p->ep.body_limit);
    // A response to HEAD has a Content-Length but no body (RFC 9110 §9.3.2).
    parser.skip(req.method() == http::verb::head);
    auto [rec, rn] = co_await http::async_read(*stream, p->buffer, parser, use_nothrow);
    throw_if(rec, "read response");
    lowest.expires_never();
    const auto& msg = parser.get();
    response res;
    res.status = msg.result_int();
    res.keep_alive = msg.keep_alive();
    for (const auto& f : msg) {
        res.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    res.body = msg.body();
    co_return res;
}

template <class Stream>
asio::awaitable<std::string> raw_io(impl_ptr p, Stream* stream, std::string bytes) {
    auto& lowest = p->lowest();
    lowest.expires_after(p->ep.timeout);
    std::string received;
    auto [wec, wn] = co_await asio::async_write(*stream, asio::buffer(bytes), use_nothrow);
    if (wec) {
        co_return received;  // the server may close before reading everything: that is an answer
    }
    std::array<char, 4096> chunk{};
    for (;;) {
        auto [rec, rn] = co_await stream->async_read_some(asio::buffer(chunk), use_nothrow);
        received.append(chunk.data(), rn);
        if (rec) {
            co_return received;
        }
    }
}

// Reads until the peer closes or the stream's deadline passes; raises *done for the writer.
template <class Stream>
asio::awaitable<void> paced_read(Stream* stream, paced_result* out,
                                 std::chrono::steady_clock::time_point start, bool* done) {
    std::array<char, 4096> chunk{};
    for (;;) {
        auto [ec, n] = co_await stream->async_read_some(asio::buffer(chunk), use_nothrow);
        out->received.append(chunk.data(), n);
        if (ec) {
            out->closed = ec != beast::error::timeout;
            out->closed_after = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start);
            *done = true;
            co_return;
        }
    }
}

template <class Stream>
asio::awaitable<void> paced_write(impl_ptr p, Stream* stream, std::vector<paced_step> steps,
                                  const bool* done) {
    asio::steady_timer pause(p->ioc);
    for (const auto& step : steps) {
        if (step.pause.count() > 0) {
            pause.expires_after(step.pause);
            auto [tec] = co_await pause.async_wait(use_nothrow);
            (void)tec;
        }
        if (*done) {
            co_return;
        }
        auto [ec, n] = co_await asio::async_write(*stream, asio::buffer(step.bytes), use_nothrow);
        if (ec) {
            co_return;  // the peer closed: the reader sees it
        }
    }
}

template <class Stream>
asio::awaitable<paced_result> paced_io(impl_ptr p, Stream* stream, std::vector<paced_step> steps) {
    using namespace asio::experimental::awaitable_operators;
    p->lowest().expires_after(p->ep.timeout);
    error_code ignored;
    p->lowest().socket().set_option(tcp::no_delay(true), ignored);
    paced_result out;
    bool done = false;
    const auto start = std::chrono::steady_clock::now();
    co_await (paced_read(stream, &out, start, &done) &&
              paced_write(p, stream, std::move(steps), &done));
    co_return out;
}

}  // namespace

connection::connection(endpoint ep) : impl_(std::make_unique<impl>(std::move(ep))) {
    impl_->run(connect(impl_.get()));
}

connection::~connection() { close(); }

response connection::request(http::verb method, std::string target, header_list headers,
                             std::string body) {
    if (!impl_->open) {
        throw system_error(asio::error::not_connected, "test client: connection closed");
    }
    http::request<http::string_body> req{method, target, 11};
    bool has_host = false;
    for (auto& [k, v] : headers) {
        has_host = has_host || iequals(k, "host");
        req.insert(k, v);
    }
    if (!has_host) {
        req.set(http::field::host, impl_->ep.server_name + ':' + std::to_string(impl_->ep.port));
    }
    req.set(http::field::user_agent, "imagegate-tests");
    req.body() = std::move(body);
    req.prepare_payload();
    response res = impl_->tls ? impl_->run(exchange(impl_.get(), &*impl_->tls, std::move(req)))
                              : impl_->run(exchange(impl_.get(), &*impl_->plain, std::move(req)));
    if (!res.keep_alive) {
        close();
    }
    return res;
}

bool connection::is_open() const noexcept { return impl_->open; }

void connection::close() noexcept {
    if (impl_ && impl_->open) {
        impl_->open = false;
        error_code ignored;
        impl_->lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
        impl_->lowest().socket().close(ignored);
    }
}

response request(const endpoint& ep, http::verb method, std::string target, header_list headers,
                 std::string body) {
    connection c(ep);
    return c.request(method, std::move(target), std::move(headers), std::move(body));
}

std::string raw_exchange(const endpoint& ep, std::string bytes) {
    connection::impl p(ep);
    p.run(connect(&p));
    return p.tls ? p.run(raw_io(&p, &*p.tls, std::move(bytes)))
                 : p.run(raw_io(&p, &*p.plain, std::move(bytes)));
}

paced_result paced_exchange(const endpoint& ep, std::vector<paced_step> steps) {
    connection::impl p(ep);
    p.run(connect(&p));
    return p.tls ? p.run(paced_io(&p, &*p.tls, std::move(steps)))
                 : p.run(paced_io(&p, &*p.plain, std::move(steps)));
}

}  // namespace imagegate::testing
