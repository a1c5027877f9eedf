#include "tests/support/scripted_upstream.hpp"

#include "gateway/core/net.hpp"
#include "tests/emulator/pki.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

namespace imagegate::testing {

namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::string_view not_found_body =
    R"({"result":null,"success":false,"errors":[{"code":5404,"message":"Image not found"}],)"
    R"("messages":[]})";
constexpr std::string_view refused_body =
    R"({"result":null,"success":false,"errors":[{"code":10000,"message":"Authentication error"}],)"
    R"("messages":[]})";

std::string json_escape(std::string_view s) {
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\u%04x", u);
            out += hex;
        } else {
            out += c;
        }
    }
    return out;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() &&
            std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// The path segment after `marker`, up to the next '/' (or the end when `rest`).
std::string segment_after(std::string_view target, std::string_view marker, bool rest) {
    const auto at = target.find(marker);
    if (at == std::string_view::npos) {
        return {};
    }
    auto tail = target.substr(at + marker.size());
    tail = tail.substr(0, tail.find('?'));
    return std::string(rest ? tail : tail.substr(0, tail.find('/')));
}

std::string answer(std::string_view status_line, std::string_view body, bool framed = true) {
    std::string out = "HTTP/1.1 ";
    out += status_line;
    out += "\r\nContent-Type: application/json\r\n";
    if (framed) {
        out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    out += "\r\n";
    out += body;
    return out;
}

/// One write of a script, after waiting `delay`.
struct step {
    std::chrono::milliseconds delay{0};
    std::string bytes;
    bool stray = false;  // an extra response nobody asked for
};

struct script {
    std::vector<step> steps;
    bool close_after = false;  // close_notify and close once written
};

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

script script_for(const scripted_upstream_options& o, const scripted_request& r) {
    const auto& refused = o.refused_credentials;
    if (!r.credential.empty() &&
        std::find(refused.begin(), refused.end(), r.credential) != refused.end()) {
        return {{{0ms, answer("403 Forbidden", refused_body)}}};
    }
    const std::string& id = r.image_id;
    const std::string record = answer("200 OK", scripted_record(r.account, id, r.seq));
    const std::string not_found = answer("404 Not Found", not_found_body);
    if (starts_with(id, "missing-")) {
        return {{{0ms, not_found}}};
    }
    if (starts_with(id, "early103-")) {
        return {{{0ms, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"},
                 {o.late_answer, record}}};
    }
    if (starts_with(id, "same-packet-100-")) {
        return {{{0ms, "HTTP/1.1 100 Continue\r\n\r\n" + record}}};
    }
    if (starts_with(id, "same-packet-103-")) {
        return {{{0ms, "HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n" + record}}};
    }
    if (starts_with(id, "many1xx-") && id.size() > 9 &&
        std::isdigit(static_cast<unsigned char>(id[8]))) {
        std::string bytes;
        for (int i = 0; i < id[8] - '0'; ++i) {
            bytes += "HTTP/1.1 103 Early Hints\r\n\r\n";
        }
        return {{{0ms, bytes + record}}};
    }
    if (starts_with(id, "double-")) {
        return {{{0ms, record}, {o.stray_delay, record, true}}};
    }
    if (starts_with(id, "double5404-")) {
        return {{{0ms, record}, {o.stray_delay, not_found, true}}};
    }
    if (starts_with(id, "trailing-")) {
        return {{{0ms, record}, {0ms, not_found, true}}};
    }
    if (starts_with(id, "glued-")) {
        return {{{0ms, record + not_found, true}}};
    }
    if (starts_with(id, "close-delim-")) {
        return {{{0ms, answer("200 OK", scripted_record(r.account, id, r.seq), false)}}, true};
    }
    if (starts_with(id, "switch101-")) {
        return {{{0ms,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                  "Connection: Upgrade\r\n\r\n"}}};
    }
    return {{{0ms, record}}};
}

}  // namespace

struct scripted_upstream::state {
    explicit state(scripted_upstream_options o) : opts(std::move(o)), certs(make_test_pki()) {
        ssl_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                            ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                            ssl::context::no_tlsv1_1);
        ssl_ctx.use_certificate_chain(asio::buffer(certs.server_cert_pem));
        ssl_ctx.use_private_key(asio::buffer(certs.server_key_pem), ssl::context::pem);
        const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
        acceptor.open(ep.protocol());
        acceptor.set_option(asio::socket_base::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen();
        port = acceptor.local_endpoint().port();
    }

    scripted_request record(const http::request_parser<http::empty_body>::value_type& req,
                            std::uint64_t connection, std::uint64_t on_connection) {
        scripted_request r;
        r.target = std::string(req.target());
        r.account = segment_after(r.target, "/accounts/", false);
        r.image_id = percent_decode(segment_after(r.target, "/images/v1/", true));
        const std::string_view auth = req[http::field::authorization];
        if (starts_with(auth, "Bearer ")) {
            r.credential = std::string(auth.substr(7));
        } else {
            r.credential = std::string(req["X-Auth-Key"]);
        }
        r.connection = connection;
        r.on_connection = on_connection;
        const std::lock_guard lock(mu);
        r.seq = requests.size() + 1;
        requests.push_back(r);
        return r;
    }

    std::uint64_t count_connection() {
        const std::lock_guard lock(mu);
        return ++connections;
    }

    void count_stray() {
        {
            const std::lock_guard lock(mu);
            ++strays;
        }
        cv.notify_all();
    }

    // The io_context comes first: it is destroyed last, after the acceptor and the context,
    // and its destructor destroys the suspended connection coroutines (and their sockets).
    asio::io_context ioc{1};
    scripted_upstream_options opts;
    pki certs;
    ssl::context ssl_ctx{ssl::context::tls_server};
    tcp::acceptor acceptor{ioc};
    std::uint16_t port = 0;

    mutable std::mutex mu;
    mutable std::condition_variable cv;
    std::vector<scripted_request> requests;  // guarded by mu
    std::uint64_t connections = 0;           // guarded by mu
    std::uint64_t strays = 0;                // guarded by mu

    std::thread thread;
};

namespace {

using state = scripted_upstream::state;
using tls_stream = ssl::stream<beast::tcp_stream>;

// A connection or accept task that throws is a bug in this file: say so on stderr.
struct report_failure {
    const char* what;
    void operator()(std::exception_ptr ep) const {
        if (!ep) {
            return;
        }
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "scripted_upstream: %s task threw: %s\n", what, e.what());
        }
    }
};

asio::awaitable<void> serve(state& st, tcp::socket socket, std::uint64_t connection) {
    tls_stream stream(beast::tcp_stream(std::move(socket)), st.ssl_ctx);
    auto& lowest = beast::get_lowest_layer(stream);
    lowest.expires_after(10s);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (hec) {
        co_return;
    }
    beast::flat_buffer buffer;
    for (std::uint64_t n = 1;; ++n) {
        // A test never leaves a connection idle this long; the bound keeps a stuck client
        // from holding the server.
        lowest.expires_after(60s);
        http::request_parser<http::empty_body> parser;
        auto [rec, bytes] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        (void)bytes;
        if (rec) {
            co_return;
        }
        const auto s = script_for(st.opts, st.record(parser.get(), connection, n));
        for (const auto& step : s.steps) {
            if (step.delay > 0ms) {
                asio::steady_timer wait(stream.get_executor(), step.delay);
                co_await wait.async_wait(use_nothrow);
            }
            lowest.expires_after(10s);
            auto [wec, written] =
                co_await asio::async_write(stream, asio::buffer(step.bytes), use_nothrow);
            (void)written;
            if (wec) {
                co_return;
            }
            if (step.stray) {
                st.count_stray();
            }
        }
        if (s.close_after) {
            // close_notify marks the end of a close-delimited body (the client refuses a
            // truncated one); the client closes without answering it, which ends the wait.
            lowest.expires_after(5s);
            auto [sec] = co_await stream.async_shutdown(use_nothrow);
            (void)sec;
            co_return;
        }
    }
}

asio::awaitable<void> accept_loop(state& st) {
    for (;;) {
        auto [ec, socket] = co_await st.acceptor.async_accept(use_nothrow);
        if (ec) {
            if (!st.acceptor.is_open()) {
                co_return;
            }
            asio::steady_timer backoff(st.ioc, 10ms);
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        const auto connection = st.count_connection();
        asio::co_spawn(st.ioc, serve(st, std::move(socket), connection),
                       report_failure{"connection"});
    }
}

}  // namespace

scripted_upstream::scripted_upstream(scripted_upstream_options o)
    : state_(std::make_shared<state>(std::move(o))) {
    asio::co_spawn(state_->ioc, accept_loop(*state_), report_failure{"accept"});
    state_->thread = std::thread([st = state_.get()] { st->ioc.run(); });
}

scripted_upstream::~scripted_upstream() {
    state_->ioc.stop();
    state_->thread.join();
}

std::uint16_t scripted_upstream::port() const noexcept { return state_->port; }

std::string scripted_upstream::base_url() const {
    return "https://127.0.0.1:" + std::to_string(port()) + "/client/v4";
}

const std::string& scripted_upstream::ca_pem() const noexcept { return state_->certs.ca_cert_pem; }

std::vector<scripted_request> scripted_upstream::requests() const {
    const std::lock_guard lock(state_->mu);
    return state_->requests;
}

std::size_t scripted_upstream::requests_for(std::string_view image_id) const {
    const std::lock_guard lock(state_->mu);
    return static_cast<std::size_t>(
        std::count_if(state_->requests.begin(), state_->requests.end(),
                      [&](const scripted_request& r) { return r.image_id == image_id; }));
}

std::uint64_t scripted_upstream::connections_accepted() const {
    const std::lock_guard lock(state_->mu);
    return state_->connections;
}

std::uint64_t scripted_upstream::strays_sent() const {
    const std::lock_guard lock(state_->mu);
    return state_->strays;
}

bool scripted_upstream::wait_for_strays(std::uint64_t n, std::chrono::milliseconds limit) const {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, limit, [&] { return state_->strays >= n; });
}

std::string scripted_record(std::string_view account, std::string_view image_id,
                            std::uint64_t seq) {
    const std::string id = json_escape(image_id);
    const std::string acct = json_escape(account);
    return R"({"result":{"id":")" + id + R"(","filename":")" + acct + "-" + std::to_string(seq) +
           R"(.png","meta":{"account":")" + acct + R"(","request":)" + std::to_string(seq) +
           R"(},"uploaded":"2024-01-01T00:00:00.000Z","requireSignedURLs":false,)"
           R"("variants":["https://imagedelivery.net/h/)" +
           id + R"(/public"]},"success":true,"errors":[],"messages":[]})";
}

std::string account_marker(std::string_view account) {
    return R"("account":")" + json_escape(account) + "\"";
}

}  // namespace imagegate::testing
