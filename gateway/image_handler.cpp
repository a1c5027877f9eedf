#include "gateway/image_handler.hpp"

#include "gateway/route.hpp"

namespace imagegate::gateway {

asio::awaitable<reply> image_handler::handle(request req) {
    route_result route = route_image(req.target);
    const bool readable = req.method == http::verb::get || req.method == http::verb::head;
    errc e = route.error;
    if (e != errc::route_not_found && !readable) {
        e = errc::method_not_allowed;
    }
    if (e == errc{}) {
        e = errc::not_implemented;
    }
    reply r = make_error_reply(e);
    r.route = e == errc::route_not_found ? "not_found" : "image";
    co_return r;
}

}  // namespace imagegate::gateway
