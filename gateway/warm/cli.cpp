#include "gateway/warm/cli.hpp"

#include "config/load.hpp"
#include "gateway/core/net.hpp"
#include "gateway/image/route.hpp"
#include "gateway/warm/page.hpp"
#include "gateway/warm/warmer.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <simdjson.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <unistd.h>

namespace imagegate::warm {
namespace {

namespace http = boost::beast::http;
using namespace std::chrono_literals;

constexpr std::string_view usage =
    "usage: imagegate warm --account ID [--admin http://HOST:PORT] [--admin-token-file FILE]\n"
    "                      [--per-page N] [--resume-from TOKEN] [--restart]\n"
    "Starts a warm job on a running gateway (POST /cache/warm on its admin listener), or\n"
    "resumes the account's unfinished one from its position, and follows it until it ends. The "
    "admin token comes from --admin-token-file or\n"
    "$IMAGEGATE_ADMIN_TOKEN. Ctrl-C stops following; the job keeps running.\n";

volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_interrupt(int) { interrupted = 1; }

struct answer {
    unsigned status = 0;
    std::string body;
    std::string error;  // transport failure
};

// One HTTP/1.1 exchange with the admin listener, 5 s at most.
asio::awaitable<void> exchange(std::string host, std::string port, http::verb method,
                               std::string target, std::string token, answer* out) {
    const auto ex = co_await asio::this_coro::executor;
    asio::ip::tcp::resolver resolver(ex);
    auto [rec, endpoints] = co_await resolver.async_resolve(host, port, use_nothrow);
    if (rec) {
        out->error = "cannot resolve " + host + ": " + rec.message();
        co_return;
    }
    boost::beast::tcp_stream stream(ex);
    stream.expires_after(5s);
    auto [cec, ep] = co_await stream.async_connect(endpoints, use_nothrow);
    if (cec) {
        out->error = "cannot connect to " + host + ":" + port + ": " + cec.message();
        co_return;
    }
    http::request<http::empty_body> req(method, target, 11);
    req.set(http::field::host, host);
    req.set(http::field::authorization, "Bearer " + token);
    auto [wec, wn] = co_await http::async_write(stream, req, use_nothrow);
    boost::beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(4 * 1024 * 1024);
    auto [rdec, rn] = co_await http::async_read(stream, buf, parser, use_nothrow);
    if (wec || rdec) {
        out->error = "admin request failed: " + (wec ? wec : rdec).message();
        co_return;
    }
    out->status = parser.get().result_int();
    out->body = std::move(parser.get().body());
}

answer call(const cli_options& o, http::verb method, std::string target, const std::string& token) {
    asio::io_context io;
    answer out;
    asio::co_spawn(io, exchange(o.admin_host, o.admin_port, method, std::move(target), token, &out),
                   asio::detached);
    io.run();
    return out;
}

// The message of an error envelope, or the status.
std::string error_of(const answer& a) {
    if (!a.error.empty()) {
        return a.error;
    }
    simdjson::ondemand::parser p;
    simdjson::padded_string body(a.body);
    std::string_view msg;
    auto doc = p.iterate(body);
    for (auto e : doc["errors"]) {
        if (!e["message"].get_string().get(msg)) {
            return "HTTP " + std::to_string(a.status) + ": " + std::string(msg);
        }
        break;
    }
    return "HTTP " + std::to_string(a.status);
}

// Leaves `out` as it was when the field is absent or of another type.
template <class T>
void read_number(simdjson::ondemand::object& o, std::string_view key, T& out) {
    T v{};
    if (o[key].get(v) == simdjson::SUCCESS) {
        out = v;
    }
}

std::string duration_text(double seconds) {
    const auto s = static_cast<long long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) {
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    } else if (s >= 60) {
        std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
    } else {
        std::snprintf(buf, sizeof buf, "%llds", s);
    }
    return buf;
}

}  // namespace

cli_options parse_cli(const std::vector<std::string>& args) {
    cli_options o;
    for (std::size_t i = 0; i < args.size() && o.error.empty(); ++i) {
        const std::string& a = args[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) {
                o.error = a + " needs a value";
                return {};
            }
            return args[++i];
        };
        if (a == "--help" || a == "-h") {
            o.help = true;
        } else if (a == "--account") {
            o.account = value();
        } else if (a == "--admin") {
            std::string url = value();
            constexpr std::string_view scheme = "http://";
            if (!url.starts_with(scheme)) {
                o.error = "--admin must be http://HOST:PORT (the admin listener speaks HTTP)";
                break;
            }
            url.erase(0, scheme.size());
            while (!url.empty() && url.back() == '/') {
                url.pop_back();
            }
            const auto colon = url.rfind(':');
            if (colon == std::string::npos || colon == 0 || colon + 1 == url.size()) {
                o.error = "--admin must be http://HOST:PORT";
                break;
            }
            o.admin_host = url.substr(0, colon);
            o.admin_port = url.substr(colon + 1);
            if (o.admin_host.front() == '[' && o.admin_host.back() == ']') {
                o.admin_host = o.admin_host.substr(1, o.admin_host.size() - 2);
            }
        } else if (a == "--admin-token-file") {
            o.token_file = value();
        } else if (a == "--per-page") {
            const std::string v = value();
            char* end = nullptr;
            const unsigned long n = std::strtoul(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || n < min_per_page || n > max_per_page) {
                o.error = "--per-page must be from 10 to 10000";
            }
            o.per_page = n;
        } else if (a == "--resume-from") {
            o.resume_from = value();
            if (o.error.empty() && !is_continuation_token(o.resume_from)) {
                o.error = "--resume-from must be a continuation token";
            }
        } else if (a == "--restart") {
            o.restart = true;
        } else {
            o.error = "unknown argument " + a;
        }
    }
    if (o.error.empty() && !o.help && !gateway::is_account_id(o.account)) {
        o.error = "--account must be 32 lowercase hexadecimal characters";
    }
    return o;
}

std::optional<shown_job> find_job(std::string_view body, std::string_view account) {
    simdjson::ondemand::parser p;
    simdjson::padded_string padded(body);
    simdjson::ondemand::document doc;
    simdjson::ondemand::array jobs;
    if (p.iterate(padded).get(doc) || doc["result"]["jobs"].get_array().get(jobs)) {
        return std::nullopt;
    }
    for (auto item : jobs) {
        simdjson::ondemand::object o;
        std::string_view acc;
        if (item.get_object().get(o) || o["account"].get_string().get(acc)) {
            return std::nullopt;
        }
        if (acc != account) {
            continue;
        }
        shown_job j;
        std::string_view s;
        if (o["state"].get_string().get(s)) {
            return std::nullopt;
        }
        j.state = std::string(s);
        read_number(o, "pages", j.pages);
        read_number(o, "images_stored", j.stored);
        read_number(o, "invalid", j.invalid);
        read_number(o, "refused", j.refused);
        read_number(o, "l2_failed", j.l2_failed);
        std::uint64_t total = 0;
        if (!o["total"].get_uint64().get(total)) {
            j.total = total;
        }
        read_number(o, "rate_per_s", j.rate);
        if (!o["last_error"].get_string().get(s)) {
            j.last_error = std::string(s);
        }
        return j;
    }
    return std::nullopt;
}

std::string progress_line(const shown_job& j, bool bar) {
    std::string out;
    char buf[160];
    if (j.total && *j.total > 0) {
        const double f =
            std::min(1.0, static_cast<double>(j.stored) / static_cast<double>(*j.total));
        if (bar) {
            constexpr int width = 30;
            const int filled = static_cast<int>(f * width);
            out += '[';
            out.append(static_cast<std::size_t>(filled), '#');
            out.append(static_cast<std::size_t>(width - filled), '-');
            out += "] ";
        }
        std::snprintf(buf, sizeof buf, "%3.0f%% %llu/%llu images", f * 100,
                      static_cast<unsigned long long>(j.stored),
                      static_cast<unsigned long long>(*j.total));
    } else {
        std::snprintf(buf, sizeof buf, "%llu images", static_cast<unsigned long long>(j.stored));
    }
    out += buf;
    std::snprintf(buf, sizeof buf, ", %llu pages, %.0f/s", static_cast<unsigned long long>(j.pages),
                  j.rate);
    out += buf;
    if (j.total && j.rate > 0 && *j.total > j.stored && j.state != "done") {
        out += ", ETA " + duration_text(static_cast<double>(*j.total - j.stored) / j.rate);
    }
    if (j.invalid > 0) {
        out += ", " + std::to_string(j.invalid) + " invalid";
    }
    if (j.l2_failed > 0) {
        out += ", " + std::to_string(j.l2_failed) + " not in L2";
    }
    if (j.state != "running") {
        out += " (" + j.state + (j.last_error.empty() ? "" : ": " + j.last_error) + ")";
    }
    return out;
}

int run_warm_command(const std::vector<std::string>& args) {
    const cli_options o = parse_cli(args);
    if (o.help) {
        std::fputs(usage.data(), stdout);
        return 0;
    }
    if (!o.error.empty()) {
        std::fprintf(stderr, "imagegate warm: %s\n%s", o.error.c_str(), usage.data());
        return 2;
    }
    std::string token;
    if (!o.token_file.empty()) {
        config::settings s;
        s.admin.token_file = o.token_file;
        const auto errors = config::load_admin_token(s);
        if (!errors.empty()) {
            std::fprintf(stderr, "imagegate warm: %s: %s\n", errors.front().key.c_str(),
                         errors.front().reason.c_str());
            return 2;
        }
        token = s.secret.admin_token;
    } else if (const char* env = std::getenv("IMAGEGATE_ADMIN_TOKEN")) {
        token = env;
    }
    if (token.empty()) {
        std::fprintf(stderr,
                     "imagegate warm: no admin token (--admin-token-file or "
                     "IMAGEGATE_ADMIN_TOKEN)\n");
        return 2;
    }
    std::string target = "/cache/warm?account=" + o.account;
    if (o.per_page) {
        target += "&per_page=" + std::to_string(*o.per_page);
    }
    if (!o.resume_from.empty()) {
        target += "&resume_from=" + o.resume_from;
    }
    if (o.restart) {
        target += "&restart=1";
    }
    const answer started = call(o, http::verb::post, target, token);
    if (started.status == 409 && started.error.empty()) {
        std::fprintf(stderr, "imagegate warm: %s; following it\n", error_of(started).c_str());
    } else if (started.status != 202) {
        std::fprintf(stderr, "imagegate warm: %s\n", error_of(started).c_str());
        return 1;
    }
    std::signal(SIGINT, on_interrupt);
    const bool tty = ::isatty(STDOUT_FILENO) != 0;
    auto last_plain = std::chrono::steady_clock::now() - 1h;
    for (;;) {
        for (int i = 0; i < 10 && !interrupted; ++i) {
            std::this_thread::sleep_for(50ms);  // 500 ms between polls, Ctrl-C seen at once
        }
        if (interrupted) {
            std::printf(
                "%sinterrupted: the warm job keeps running on the gateway (DELETE "
                "/cache/warm?account=%s cancels it)\n",
                tty ? "\n" : "", o.account.c_str());
            return 130;
        }
        const answer a = call(o, http::verb::get, "/cache/warm", token);
        if (a.status != 200) {
            std::fprintf(stderr, "%simagegate warm: %s\n", tty ? "\n" : "", error_of(a).c_str());
            return 1;
        }
        const auto j = find_job(a.body, o.account);
        if (!j) {
            std::fprintf(stderr, "%simagegate warm: the gateway no longer lists the job\n",
                         tty ? "\n" : "");
            return 1;
        }
        const bool ended = j->state == "done" || j->state == "failed" || j->state == "cancelled" ||
                           j->state == "interrupted";
        const auto now = std::chrono::steady_clock::now();
        if (tty) {
            std::printf("\r\033[K%s", progress_line(*j, true).c_str());
            std::fflush(stdout);
        } else if (ended || now - last_plain >= 5s) {
            std::printf("%s\n", progress_line(*j, false).c_str());
            std::fflush(stdout);
            last_plain = now;
        }
        if (ended) {
            if (tty) {
                std::printf("\n");
            }
            return j->state == "done" ? 0 : 1;
        }
    }
}

}  // namespace imagegate::warm
