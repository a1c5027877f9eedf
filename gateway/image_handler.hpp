// The image-details route: validates the request, answers from the cache, fetches misses.
#pragma once

#include "gateway/http_server.hpp"

namespace imagegate::gateway {

/// Thread-safe; references only services owned by the composition root.
class image_handler {
public:
    asio::awaitable<reply> handle(request req);
};

}  // namespace imagegate::gateway
