// The data listener's routing table; see routes.hpp.
#include "gateway/image/routes.hpp"

#include "gateway/image/handler.hpp"
#include "gateway/image/route.hpp"

namespace imagegate::gateway {

void add_image_routes(router& r, route_handler handle) {
    // The patterns are the shape route_image accepts; the handler still validates the
    // account and the id. `{id}` also matches the sibling endpoints (keys, stats, variants,
    // and their percent-encoded spellings), which are 404s whatever the method: `owns`
    // tells them apart when the method is not GET/HEAD, so they never get a 405.
    route_options options;
    // handle() parses the target (parse_image_target) and answers 404 for anything not of
    // this shape, as it always did: a GET/HEAD costs the router one prefix comparison.
    options.handler_checks_path = true;
    // What the image handler does not own under /client/v4/ (listings, keys, ...) is
    // forwarded by the composition root's wrapper, and a listing can be large: streamed.
    options.body.streaming_reply = true;
    options.owns = [](std::string_view target) {
        return parse_image_target(target).error != errc::route_not_found;
    };
    const method_set readable{http::verb::get};  // and HEAD
    r.add(readable, "/client/v4/accounts/{account}/images/v1/{id}", "image", handle, options);
    r.add(readable, "/accounts/{account}/images/v1/{id}", "image", handle, options);
    // The route takes GET and HEAD only, which is the Allow make_error_reply adds by default.
    r.set_refusal(
        [](errc e, std::string_view, std::string_view) { return image_handler::refusal(e); });
}

}  // namespace imagegate::gateway
