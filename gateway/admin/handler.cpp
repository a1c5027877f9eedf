#include "gateway/admin/handler.hpp"

#include "gateway/auth/authorizer.hpp"
#include "gateway/http/envelope.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/image/route.hpp"
#include "gateway/core/log_escape.hpp"

#include <fmt/format.h>

#include <array>

namespace imagegate::gateway {
namespace {

reply json_reply(unsigned status, std::string body, std::string_view route) {
    reply r = make_reply(status, std::move(body), "application/json");
    r.route = route;
    return r;
}

reply error(errc e, std::string_view route) {
    reply r = make_error_reply(e);
    r.route = route;
    return r;
}

bool is_get(const request& req) {
    return req.method == http::verb::get || req.method == http::verb::head;
}

}  // namespace

asio::awaitable<reply> admin_handler::handle(request req) {
    purge_target purged;
    reply r = answer(req, &purged);
    if (purged.done && fleet_.broadcast) {
        const bool sent = co_await fleet_.broadcast(purged.account, purged.canonical_id);
        if (!sent) {
            // Purged here only: the caller must know the fleet may still serve it, and retry.
            r = json_reply(503,
                           error_envelope(99534,
                                          "Purged on this instance only: the fleet tier (Redis) "
                                          "is unreachable, so the purge was not broadcast to "
                                          "the other instances or the shared cache; retry"),
                           "purge");
        }
    }
    co_return r;
}

reply admin_handler::answer(const request& req, purge_target* purged) {
    const std::string_view path = request_path(req.target);
    if (path == "/healthz") {
        if (!is_get(req)) {
            return error(errc::method_not_allowed, "healthz");
        }
        return json_reply(200, R"({"status":"ok"})", "healthz");
    }
    if (path == "/readyz") {
        if (!is_get(req)) {
            return error(errc::method_not_allowed, "readyz");
        }
        if (!ready_.load(std::memory_order_relaxed)) {
            return json_reply(503, R"({"status":"not ready"})", "readyz");
        }
        if (fleet_.degraded) {
            // Degraded is still ready: L1 and the local fallbacks serve without Redis.
            return json_reply(200,
                              fleet_.degraded() ? R"({"status":"ready","fleet":"degraded"})"
                                                : R"({"status":"ready","fleet":"ok"})",
                              "readyz");
        }
        return json_reply(200, R"({"status":"ready"})", "readyz");
    }
    if (path == "/metrics") {
        if (!is_get(req)) {
            return error(errc::method_not_allowed, "metrics");
        }
        reply r = make_reply(200, metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
        r.route = "metrics";
        return r;
    }
    // DELETE /cache/accounts/{a}  and  DELETE /cache/accounts/{a}/images/{canonical id}
    constexpr std::string_view purge_prefix = "/cache/accounts/";
    if (path.starts_with(purge_prefix)) {
        std::string_view rest = path.substr(purge_prefix.size());
        const auto slash = rest.find('/');
        const std::string_view account = rest.substr(0, slash);
        std::string_view image;
        if (slash != std::string_view::npos) {
            std::string_view tail = rest.substr(slash + 1);
            constexpr std::string_view images = "images/";
            if (!tail.starts_with(images) || tail.size() == images.size() ||
                tail.substr(images.size()).find('/') != std::string_view::npos) {
                return error(errc::route_not_found, "not_found");
            }
            image = tail.substr(images.size());
        }
        if (req.method != http::verb::delete_) {
            reply r = make_reply(405, error_envelope(errc::method_not_allowed), "application/json",
                                 "Allow: DELETE\r\n");
            r.route = "purge";
            return r;
        }
        // Purge changes state: only with the admin token, compared in constant time.
        if (auto refused = refuse_unless_admin(req, "purge")) {
            return std::move(*refused);
        }
        if (!is_account_id(account)) {
            return error(errc::invalid_account_id, "purge");
        }
        if (image.empty()) {
            const std::size_t n = purge_.account ? purge_.account(account) : 0;
            if (purged != nullptr) {
                *purged = {std::string(account), {}, true};
            }
            return json_reply(200,
                              R"({"success":true,"errors":[],"messages":[],"result":{"purged":)" +
                                  std::to_string(n) + "}}",
                              "purge");
        }
        std::string decoded;
        if (!percent_decode(image, decoded) || decoded.empty() ||
            decoded.size() > max_image_id_bytes || !is_valid_utf8(decoded)) {
            return error(errc::invalid_image_id, "purge");
        }
        const std::string canonical = percent_encode(decoded);
        const bool removed = purge_.image ? purge_.image(account, canonical) : false;
        if (purged != nullptr) {
            *purged = {std::string(account), canonical, true};
        }
        return json_reply(
            200,
            std::string(R"({"success":true,"errors":[],"messages":[],"result":{"purged":)") +
                (removed ? "1" : "0") + "}}",
            "purge");
    }
    if (path == "/config/reload") {
        return reload(req);
    }
    return error(errc::route_not_found, "not_found");
}

std::optional<reply> admin_handler::refuse_unless_admin(const request& req,
                                                        std::string_view route) const {
    const auto token = admin_token_.load();
    if (is_admin(req.headers, *token)) {
        return std::nullopt;
    }
    if (token->empty()) {
        return error(errc::forbidden, route);
    }
    reply r = make_error_reply(errc::unauthorized,
                               "WWW-Authenticate: Bearer realm=\"imagegate-admin\"\r\n");
    r.route = route;
    return r;
}

// POST /config/reload: the same reload as SIGHUP, answered with what it did. A bodiless POST
// (the session reads no request bodies).
reply admin_handler::reload(const request& req) {
    if (req.method != http::verb::post) {
        reply r = make_reply(405, error_envelope(errc::method_not_allowed), "application/json",
                             "Allow: POST\r\n");
        r.route = "reload";
        return r;
    }
    if (auto refused = refuse_unless_admin(req, "reload")) {
        return std::move(*refused);
    }
    reload_outcome outcome;
    if (reload_) {
        outcome = reload_();
    } else {
        outcome.errors.emplace_back("reload", "this gateway has no configuration source");
    }
    return json_reply(outcome.ok ? 200 : 400, reload_json(outcome), "reload");
}

std::string reload_json(const reload_outcome& r) {
    const auto list = [](const std::vector<std::string>& items) {
        std::string out = "[";
        for (const auto& item : items) {
            out += out.size() > 1 ? "," : "";
            out += fmt::format("{}", json_string(item));
        }
        return out + "]";
    };
    std::string errors = "[";
    for (const auto& [key, reason] : r.errors) {
        errors += errors.size() > 1 ? "," : "";
        // Code 1000 like other gateway-side errors; the key says what to fix.
        errors += fmt::format(R"({{"code":1000,"key":{},"message":{}}})", json_string(key),
                              json_string(reason));
    }
    errors += "]";
    return fmt::format(R"({{"success":{},"errors":{},"messages":[],"result":{{"applied":{},)"
                       R"("restart_required":{}}}}})",
                       r.ok ? "true" : "false", errors, list(r.applied), list(r.restart_required));
}

}  // namespace imagegate::gateway
