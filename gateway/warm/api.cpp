#include "gateway/warm/api.hpp"

#include "gateway/auth/authorizer.hpp"
#include "gateway/http/envelope.hpp"
#include "gateway/image/route.hpp"
#include "gateway/warm/page.hpp"
#include "gateway/warm/warmer.hpp"

#include <boost/asio/this_coro.hpp>

#include <charconv>

namespace imagegate::warm {
namespace {

constexpr std::string_view warm_path = "/cache/warm";

gateway::reply json(unsigned status, std::string body) {
    gateway::reply r = gateway::make_reply(status, std::move(body), "application/json");
    r.route = "warm";
    return r;
}

// A refusal in the gateway's envelope, with its own code and message (never request bytes).
gateway::reply refusal(unsigned status, std::uint32_t code, std::string_view message) {
    return json(status, gateway::error_envelope(code, message));
}

std::string_view query_of(std::string_view target) {
    const auto q = target.find('?');
    return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

}  // namespace

warm_query parse_warm_query(std::string_view query, bool need_account) {
    warm_query out;
    bool seen_account = false, seen_per_page = false, seen_resume = false, seen_restart = false;
    const auto once = [&out](bool& seen, std::string_view name) {
        if (seen) {
            out.error = std::string(name) + " given twice";
            return false;
        }
        seen = true;
        return true;
    };
    while (!query.empty() && out.error.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        const auto eq = pair.find('=');
        const std::string_view name = pair.substr(0, eq);
        const std::string_view value =
            eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
        if (name == "account") {
            if (once(seen_account, name)) {
                if (!gateway::is_account_id(value)) {
                    out.error = "account must be 32 lowercase hexadecimal characters";
                }
                out.account = std::string(value);
            }
        } else if (name == "per_page") {
            if (once(seen_per_page, name)) {
                std::size_t n = 0;
                const auto [end, ec] =
                    std::from_chars(value.data(), value.data() + value.size(), n);
                if (ec != std::errc{} || end != value.data() + value.size() || n < min_per_page ||
                    n > max_per_page) {
                    out.error = "per_page must be an integer from 10 to 10000";
                }
                out.per_page = n;
            }
        } else if (name == "resume_from") {
            if (once(seen_resume, name)) {
                if (!is_continuation_token(value)) {
                    out.error =
                        "resume_from must be a continuation token (1 to 256 characters "
                        "A-Z a-z 0-9 - . _ ~)";
                }
                out.resume_from = std::string(value);
            }
        } else if (name == "restart") {
            if (once(seen_restart, name)) {
                if (value != "1" && value != "true" && value != "0" && value != "false") {
                    out.error = "restart must be 1, true, 0 or false";
                }
                out.restart = value == "1" || value == "true";
            }
        } else {
            out.error = "unknown parameter (account, per_page, resume_from, restart)";
        }
    }
    if (out.error.empty() && need_account && !seen_account) {
        out.error = "account is required";
    }
    return out;
}

bool warm_api::owns(const gateway::request& req) {
    return gateway::request_path(req.target) == warm_path;
}

asio::awaitable<gateway::reply> warm_api::handle(gateway::request req) {
    const auto method = req.method;
    const bool is_get = method == gateway::http::verb::get || method == gateway::http::verb::head;
    if (!is_get && method != gateway::http::verb::post && method != gateway::http::verb::delete_) {
        gateway::reply r =
            gateway::make_reply(405, gateway::error_envelope(errc::method_not_allowed),
                                "application/json", "Allow: GET, POST, DELETE\r\n");
        r.route = "warm";
        co_return r;
    }
    if (auto refused = authorize_(req)) {
        co_return std::move(*refused);
    }
    if (is_get) {
        co_return json(200, progress_json(warmer_.jobs()));
    }
    const warm_query q = parse_warm_query(query_of(req.target), true);
    if (!q.error.empty()) {
        co_return refusal(400, 99400, q.error);
    }
    if (method == gateway::http::verb::delete_) {
        if (!warmer_.cancel(q.account)) {
            co_return refusal(404, 99404, "No warm job runs for this account");
        }
        co_return json(202, R"({"success":true,"errors":[],"messages":[],"result":{"account":")" +
                                q.account + R"(","state":"cancelling"}})");
    }
    if (!disabled_reason_.empty()) {
        co_return refusal(409, 99409, disabled_reason_);
    }
    start_request r;
    r.account = q.account;
    r.per_page = q.per_page;
    r.restart = q.restart;
    if (!q.resume_from.empty()) {
        r.resume_from = q.resume_from;
    }
    // The job runs on this session's worker: the upstream client serves workers only.
    const auto ex = co_await asio::this_coro::executor;
    const start_result started = warmer_.start(ex, std::move(r));
    if (started == start_result::running) {
        co_return refusal(409, 99409, "A warm job runs for this account (DELETE to cancel it)");
    }
    if (started == start_result::full) {
        co_return refusal(409, 99409, "Too many warm jobs run at once (64)");
    }
    co_return json(202, R"({"success":true,"errors":[],"messages":[],"result":{"account":")" +
                            q.account + R"(","state":")" +
                            (started == start_result::resumed ? "resumed" : "started") + "\"}}");
}

}  // namespace imagegate::warm
