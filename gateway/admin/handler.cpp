#include "gateway/admin/handler.hpp"

#include "gateway/auth/authorizer.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/image/route.hpp"

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
                             purge_hooks purge, std::string admin_token)
    : metrics_(metrics),
      ready_(ready),
      purge_(std::move(purge)),
      admin_token_(std::move(admin_token)),
      routes_(std::make_shared<router>()) {
    const method_set readable{http::verb::get};  // and HEAD
    routes_->add(readable, "/healthz", "healthz", [](const request&) -> handler_result {
        return json_reply(200, R"({"status":"ok"})", "healthz");
    });
    routes_->add(readable, "/readyz", "readyz", [this](const request&) -> handler_result {
        if (!ready_.load(std::memory_order_relaxed)) {
            return json_reply(503, R"({"status":"not ready"})", "readyz");
        }
        return json_reply(200, R"({"status":"ready"})", "readyz");
    });
    routes_->add(readable, "/metrics", "metrics", [this](const request&) -> handler_result {
        reply r = make_reply(200, metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
        r.route = "metrics";
        return r;
    });
    auto purge_route = [this](const request& req) -> handler_result { return this->purge(req); };
    routes_->add({http::verb::delete_}, "/cache/accounts/{account}", "purge", purge_route);
    routes_->add({http::verb::delete_}, "/cache/accounts/{account}/images/{id+}", "purge",
                 purge_route);
}

asio::awaitable<reply> admin_handler::handle(request req) { co_return answer(req); }

reply admin_handler::answer(const request& req) {
    // Every admin route answers at once.
    return std::get<reply>(routes_->dispatch(req));
}

// DELETE /cache/accounts/{a}  and  DELETE /cache/accounts/{a}/images/{canonical id}
reply admin_handler::purge(const request& req) {
    const std::string_view account = req.params[0];
    const std::string_view image = req.params.size > 1 ? req.params[1] : std::string_view{};
    // Purge changes state: only with the admin token, compared in constant time.
    if (!is_admin(req.headers, admin_token_)) {
        if (admin_token_.empty()) {
            return error(errc::forbidden, "purge");
        }
        reply r = make_error_reply(errc::unauthorized,
                                   "WWW-Authenticate: Bearer realm=\"imagegate-admin\"\r\n");
        r.route = "purge";
        return r;
    }
    if (!is_account_id(account)) {
        return error(errc::invalid_account_id, "purge");
    }
    if (image.empty()) {
        const std::size_t n = purge_.account ? purge_.account(account) : 0;
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
    const bool removed = purge_.image ? purge_.image(account, percent_encode(decoded)) : false;
    return json_reply(
        200,
        std::string(R"({"success":true,"errors":[],"messages":[],"result":{"purged":)") +
            (removed ? "1" : "0") + "}}",
        "purge");
}

}  // namespace imagegate::gateway
