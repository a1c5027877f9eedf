// The data listener's routing table: the image-details route (GET/HEAD, with and without the
// /client/v4 prefix) and the router's 404/405 answers in the image route's form.
#pragma once

#include "gateway/http/router.hpp"

namespace imagegate::gateway {

/// Adds the image route to `r` (first: it is the hot one), answered by `handle` (the image
/// handler's handle()), and makes `r` answer 404/405 as image_handler::refusal does.
void add_image_routes(router& r, route_handler handle);

}  // namespace imagegate::gateway
