#include "tests/support/herd.hpp"

#include "gateway/core/net.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>

namespace imagegate::testing {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

asio::awaitable<void> one(std::uint16_t port, std::string target, std::string extra, bool hang_up,
                          std::chrono::milliseconds timeout, herd_result* out,
                          std::shared_ptr<asio::steady_timer> started, std::size_t* pending) {
    auto ex = co_await asio::this_coro::executor;
    beast::tcp_stream stream(ex);
    stream.expires_after(timeout);
    auto [cec] = co_await stream.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), use_nothrow);
    // Every client is connected before anyone sends: the herd arrives together.
    if (--*pending == 0) {
        started->cancel();
    } else {
        co_await started->async_wait(use_nothrow);
    }
    if (cec) {
        co_return;
    }
    const std::string req =
        "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + extra + "Connection: close\r\n\r\n";
    const auto t0 = std::chrono::steady_clock::now();
    auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(req), use_nothrow);
    (void)wn;
    if (wec || hang_up) {
        stream.close();
        co_return;
    }
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    auto [rec, rn] = co_await http::async_read(stream, buf, res, use_nothrow);
    (void)rn;
    if (rec) {
        co_return;
    }
    out->status = res.result_int();
    out->cache_status = std::string(res["Cache-Status"]);
    out->retry_after = std::string(res["Retry-After"]);
    out->retry_after_ms = std::string(res["retry-after-ms"]);
    out->should_retry = std::string(res["x-should-retry"]);
    out->latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - t0);
}

}  // namespace

std::vector<herd_result> run_herd(std::uint16_t port, const std::vector<std::string>& targets,
                                  std::size_t hang_up, std::chrono::milliseconds timeout,
                                  const std::vector<std::string>& headers) {
    asio::io_context ioc;
    std::vector<herd_result> results(targets.size());
    auto started =
        std::make_shared<asio::steady_timer>(ioc, std::chrono::steady_clock::time_point::max());
    std::size_t pending = targets.size();
    for (std::size_t i = 0; i < targets.size(); ++i) {
        std::string extra = i < headers.size() ? headers[i] : std::string{};
        asio::co_spawn(ioc,
                       one(port, targets[i], std::move(extra), i < hang_up, timeout, &results[i],
                           started, &pending),
                       asio::detached);
    }
    ioc.run_for(timeout + std::chrono::seconds(2));
    return results;
}

std::chrono::microseconds median_latency(const std::vector<herd_result>& r) {
    std::vector<std::chrono::microseconds> v;
    for (const auto& x : r) {
        if (x.status != 0) {
            v.push_back(x.latency);
        }
    }
    if (v.empty()) {
        return {};
    }
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

}  // namespace imagegate::testing
