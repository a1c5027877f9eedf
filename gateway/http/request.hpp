// What a handler is given and what it returns: one parsed request (head, the path values its
// route captured, its body when the route takes one) and the reply, ready or to come.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/http/reply.hpp"
#include "gateway/http/stream.hpp"

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>

#include <array>
#include <cstddef>
#include <functional>
#include <string_view>
#include <variant>

namespace imagegate::gateway {

namespace http = boost::beast::http;

/// The path segments a route's `{name}` placeholders matched, in pattern order (views into
/// the request target). No allocation: a pattern has at most `capacity` placeholders.
struct path_params {
    static constexpr std::size_t capacity = 4;
    std::array<std::string_view, capacity> values{};
    std::size_t size = 0;

    std::string_view operator[](std::size_t i) const noexcept { return values[i]; }
};

/// One parsed request, valid for the duration of the handler call (for a coroutine handler:
/// until its reply has been written).
struct request {
    http::verb method = http::verb::unknown;
    std::string_view target;
    const http::fields* headers = nullptr;
    /// HEAD: the session writes headers only; handlers answer as for GET.
    bool head_only = false;
    /// X-Request-Id: the client's when valid, else generated (request_id.hpp); returned on
    /// the answer and written in the access log.
    std::string_view id;
    /// What the route's placeholders matched (empty without a router route).
    path_params params;
    /// The whole request body, for routes that take one (router.hpp body_policy); empty
    /// otherwise. Chunked bodies arrive decoded.
    std::string_view body;
    /// The client connected from a loopback address.
    bool loopback_peer = false;
    /// Routes with body_policy::streaming: the body as it arrives (null without a body).
    body_source* body_stream = nullptr;
    /// Routes with body_policy::streaming_reply: the reply written piece by piece (null
    /// otherwise, and for a request answered before its handler ran).
    reply_stream* reply_out = nullptr;
};

/// What a handler returns: the reply itself when it could answer without waiting (a fresh
/// cache hit, a refused request: no coroutine frame, no suspension), or the coroutine that
/// produces it. A coroutine handler (`-> asio::awaitable<reply>`) converts implicitly.
using handler_result = std::variant<reply, asio::awaitable<reply>>;
using handler_fn = std::function<handler_result(request)>;

}  // namespace imagegate::gateway
