#include "gateway/admin/handler.hpp"

#include "gateway/auth/authorizer.hpp"
#include "gateway/http/envelope.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/image/route.hpp"
#include "gateway/core/log_escape.hpp"

#include <fmt/format.h>

#include <array>
#include <variant>

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

}  // namespace

admin_handler::admin_handler(metrics::registry& metrics, const std::atomic<bool>& ready,
                             purge_hooks purge, std::string admin_token, fleet_hooks fleet,
                             reload_fn reload)
    : metrics_(metrics),
      ready_(ready),
      purge_(std::move(purge)),
      reload_(std::move(reload)),
      admin_token_(std::make_shared<const std::string>(std::move(admin_token))),
      fleet_(std::move(fleet)),
      routes_(std::make_shared<router>()) {
    const method_set readable{http::verb::get};  // and HEAD
    routes_->add(readable, "/healthz", "healthz", [](const request&) -> handler_result {
        return json_reply(200, R"({"status":"ok"})", "healthz");
    });
    routes_->add(readable, "/readyz", "readyz", [this](const request&) -> handler_result {
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
    });
    routes_->add(readable, "/metrics", "metrics", [this](const request&) -> handler_result {
        reply r = make_reply(200, metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
        r.route = "metrics";
        return r;
    });
    auto purge_route = [this](const request& req) -> handler_result {
        purge_target target;
        reply r = this->purge(req, &target);
        if (target.done && fleet_.broadcast) {
            return broadcast_purge(std::move(r), std::move(target));
        }
        return r;
    };
    routes_->add({http::verb::delete_}, "/cache/accounts/{account}", "purge", purge_route);
    routes_->add({http::verb::delete_}, "/cache/accounts/{account}/images/{id+}", "purge",
                 purge_route);
    routes_->add({http::verb::post}, "/config/reload", "reload",
                 [this](const request& req) -> handler_result { return this->reload(req); });
}

asio::awaitable<reply> admin_handler::handle(request req) {
    auto result = routes_->dispatch(std::move(req));
    if (auto* ready = std::get_if<reply>(&result)) {
        co_return std::move(*ready);
    }
    co_return co_await std::move(std::get<asio::awaitable<reply>>(result));
}

reply admin_handler::answer(const request& req) {
    auto result = routes_->dispatch(req);
    if (auto* ready = std::get_if<reply>(&result)) {
        return std::move(*ready);
    }
    return error(errc::internal_error, "admin");  // only a fleet purge suspends: not here
}

asio::awaitable<reply> admin_handler::broadcast_purge(reply local, purge_target target) {
    const bool sent = co_await fleet_.broadcast(target.account, target.canonical_id);
    if (sent) {
        co_return local;
    }
    // Purged here only: the caller must know the fleet may still serve it, and retry.
    co_return json_reply(503,
                         error_envelope(99534,
                                        "Purged on this instance only: the fleet tier (Redis) "
                                        "is unreachable, so the purge was not broadcast to "
                                        "the other instances or the shared cache; retry"),
                         "purge");
}

// DELETE /cache/accounts/{a}  and  DELETE /cache/accounts/{a}/images/{canonical id}
reply admin_handler::purge(const request& req, purge_target* purged) {
    const std::string_view account = req.params[0];
    const std::string_view image = req.params.size > 1 ? req.params[1] : std::string_view{};
    // Purge changes state: only with the admin token, compared in constant time.
    if (auto refused = refuse_unless_admin(req, "purge")) {
        return std::move(*refused);
    }
    if (!is_account_id(account)) {
        return error(errc::invalid_account_id, "purge");
    }
    if (image.empty()) {
        const std::size_t n = purge_.account ? purge_.account(account) : 0;
        *purged = {std::string(account), {}, true};
        return json_reply(200,
                          R"({"success":true,"errors":[],"messages":[],"result":{"purged":)" +
                              std::to_string(n) + "}}",
                          "purge");
    }
    std::string decoded;
    if (!percent_decode(image, decoded) || decoded.empty() || decoded.size() > max_image_id_bytes ||
        !is_valid_utf8(decoded)) {
        return error(errc::invalid_image_id, "purge");
    }
    const std::string canonical = percent_encode(decoded);
    const bool removed = purge_.image ? purge_.image(account, canonical) : false;
    *purged = {std::string(account), canonical, true};
    return json_reply(
        200,
        std::string(R"({"success":true,"errors":[],"messages":[],"result":{"purged":)") +
            (removed ? "1" : "0") + "}}",
        "purge");
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
