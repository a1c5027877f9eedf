// The vocabulary of a forwarded call (any method, the client's body streamed up, the answer
// streamed down): what the caller hands the upstream client and what it gets back, piece by
// piece. client::forward runs it; connection_forward.cpp moves the bytes.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/beast/http/verb.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace imagegate::upstream {

/// A request as it goes upstream. The head is built by the client from these pieces only.
struct forward_request {
    boost::beast::http::verb method = boost::beast::http::verb::get;
    /// The already-encoded target after the base path (query included), starting with '/'.
    std::string target;
    /// The client's headers that may go upstream, as complete `Name: value\r\n` lines
    /// (forward_headers.hpp builds them); never Host, framing, hop-by-hop or a credential.
    std::string header_lines;
    /// The request has a body: of this length, or chunked when no length is known.
    bool has_body = false;
    std::optional<std::uint64_t> content_length;
};

/// Where the request body comes from (the client's, as it arrives).
class forward_body {
public:
    virtual ~forward_body() = default;
    /// The next bytes; an empty span at the end. An error ends the call (it is returned as
    /// the call's error, unchanged, so the caller can tell its client's failure apart).
    virtual asio::awaitable<boost::system::result<std::span<const char>>> next() = 0;
};

/// The answer's head as the caller passes it on.
struct forward_head {
    unsigned status = 0;
    /// The response headers a client may see (forward_headers.hpp: Content-Type,
    /// Retry-After, Ratelimit*, cf-ray), as `Name: value\r\n` lines, values bounded.
    std::string header_lines;
    /// Content-Length when the upstream framed the body by length (nothing when chunked or
    /// delimited by the close).
    std::optional<std::uint64_t> content_length;
    /// For the gate (admission::upstream_signals): empty when absent or unusable.
    std::string retry_after;
    std::string ratelimit;
    std::string ratelimit_policy;
};

/// Where the answer goes, as it arrives. Returning false stops the call (the connection is
/// then closed): a client that left, a buffer that would overflow.
class forward_sink {
public:
    virtual ~forward_sink() = default;
    virtual asio::awaitable<bool> on_head(const forward_head& head) = 0;
    /// Body bytes, at most one read's worth (bounded by the connection's buffer).
    virtual asio::awaitable<bool> on_body(std::span<const char> bytes) = 0;
};

/// How a forwarded call ended once its head had reached the sink.
struct forward_outcome {
    unsigned status = 0;
    /// The whole body reached the sink (framed as the upstream announced it).
    bool complete = false;
    /// The sink stopped the call.
    bool stopped_by_sink = false;
    /// Response body bytes handed to the sink.
    std::uint64_t body_bytes = 0;
    /// From the first request byte written to the last response byte read.
    std::chrono::steady_clock::duration latency{};
    /// The request was the first on its connection (exchange_facts::fresh_connection).
    bool fresh_connection = false;
    /// Framed by length or chunks and nothing after it (exchange_facts::clean).
    bool clean = false;
};

}  // namespace imagegate::upstream
