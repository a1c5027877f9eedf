// A method × path router shared by the data and admin listeners: routes are (method set,
// path pattern) → handler, with a body policy each; unknown paths get 404, known paths with
// another method 405 with `Allow` (RFC 9110 §15.5.6), both as Cloudflare-style envelopes.
#pragma once

#include "gateway/core/errc.hpp"
#include "gateway/http/reply.hpp"
#include "gateway/http/request.hpp"

#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::gateway {

/// A set of request methods. A set with GET also takes HEAD (RFC 9110 §9.3.2: the session
/// writes the GET answer's head only). Value type.
class method_set {
public:
    constexpr method_set() noexcept = default;
    constexpr method_set(std::initializer_list<http::verb> verbs) noexcept {
        for (const auto v : verbs) {
            bits_ |= bit(v);
        }
    }
    /// Every method (a fallback that answers everything itself).
    static constexpr method_set any() noexcept {
        method_set s;
        s.bits_ = ~std::uint64_t{0};
        return s;
    }
    constexpr bool allows(http::verb v) const noexcept {
        return (bits_ & bit(v)) != 0 ||
               (v == http::verb::head && (bits_ & bit(http::verb::get)) != 0);
    }
    constexpr bool empty() const noexcept { return bits_ == 0; }
    constexpr method_set& operator|=(method_set o) noexcept {
        bits_ |= o.bits_;
        return *this;
    }
    /// "Allow: GET, HEAD\r\n": the methods in Beast's verb order, HEAD added with GET.
    std::string allow_line() const;

private:
    static constexpr std::uint64_t bit(http::verb v) noexcept {
        const auto i = static_cast<unsigned>(v);
        return i < 64 ? std::uint64_t{1} << i : 0;
    }
    std::uint64_t bits_ = 0;
};

/// A path pattern, compiled once. Literal bytes match themselves; a whole segment
/// `{name}` matches one segment, empty included, and `{name+}` one non-empty segment; a final
/// `*` matches the rest of the path (a prefix route). Each placeholder's match is captured
/// (path_params, at most path_params::capacity). The query string is never part of the path.
/// Matching is a memcmp per literal run and a memchr per placeholder: no allocation.
/// Immutable after construction; thread-safe.
class path_pattern {
public:
    /// Throws std::invalid_argument for a pattern that does not start with '/', a placeholder
    /// that is not a whole segment, a `*` that is not last, or too many placeholders.
    explicit path_pattern(std::string_view pattern);

    bool match(std::string_view path, path_params& out) const noexcept;
    /// The path starts with the pattern's leading literal (one memcmp).
    bool matches_leading_literal(std::string_view path) const noexcept {
        return path.starts_with(leading_);
    }
    const std::string& text() const noexcept { return text_; }

private:
    enum class kind : std::uint8_t {
        literal,   // `text` exactly
        segment,   // up to the next '/' or the end, possibly empty
        nonempty,  // the same, at least one byte
        rest,      // everything left
    };
    struct piece {
        kind k = kind::literal;
        std::string text;
    };
    std::string text_;
    std::vector<piece> pieces_;
    std::string leading_;  // the first literal piece
};

/// What a route accepts as a request body. The session enforces it before the handler runs
/// and hands the handler the whole body as `request::body`, or, with `streaming`, a body
/// source to pull it from as it arrives (stream.hpp). A streamed body is bound to the
/// session's stream, read buffer and parser; the session waits for the handler to return,
/// then reads and discards what the handler left unread (within the limit and the deadline),
/// so framing stays right for the next request. The limit, 100-continue (sent on the first
/// pull) and the body deadline apply either way (session_body.hpp).
struct body_policy {
    /// Largest body taken, in bytes. 0: the route takes no body, and a request with one
    /// (Content-Length > 0 or chunked) is a 400 and the connection is closed, as a body on
    /// GET always was. Above it (declared or counted while chunked): 413, closed.
    std::uint64_t max_bytes = 0;
    /// Whether `Transfer-Encoding: chunked` is accepted (total still ≤ max_bytes); otherwise
    /// a chunked body is a 411 (Length Required) and the connection is closed.
    bool chunked = false;
    /// Hand the handler a body source instead of the whole body (request::body_stream).
    bool streaming = false;
    /// Hand the handler a reply stream (request::reply_out) to write a long answer as it
    /// comes instead of returning it whole.
    bool streaming_reply = false;
    /// How long the whole body may take to arrive; zero: server.body_timeout.
    std::chrono::milliseconds timeout{0};
};

/// Per-route options beyond method and path.
struct route_options {
    body_policy body;
    /// For a pattern wider than its route (the image route's `{id}` also matches the sibling
    /// endpoints, which are 404s): whether `target` is really the route's. Asked only to tell
    /// 404 from 405 for a method the route does not take; a request with a method it takes
    /// goes to the handler, which answers such a path 404 itself. Null: every path the
    /// pattern matches is the route's.
    std::function<bool(std::string_view target)> owns;
    /// The handler checks the whole path itself and answers 404 for what is not its own
    /// (the image handler parses every target anyway). For a method the route takes, the
    /// router then compares the pattern's leading literal only (one memcmp, no captures) and
    /// leaves the rest to the handler: the hot route's decision costs a couple of
    /// comparisons. Needs `owns` for the 404/405 choice.
    bool handler_checks_path = false;
};

/// A route's handler. By const reference: the request is not copied on its way through the
/// router (a handler taking `request` by value still fits, and copies it once).
using route_handler = std::function<handler_result(const request&)>;

/// A registered route. `label` names it in metrics and logs (static storage).
struct route {
    method_set methods;
    path_pattern pattern;
    std::string_view label;
    route_handler handler;
    route_options options;
};

/// How the router answers what no route takes: `e` is route_not_found or method_not_allowed,
/// `label` the matched route's (empty for 404), `allow` the `Allow` header line for a 405.
using refusal_fn =
    std::function<reply(errc e, std::string_view label, std::string_view allow_line)>;

/// The routing table of one listener, filled at start-up, then read-only: decide() and
/// dispatch() are thread-safe. Owned by the composition root (or the admin handler) and
/// shared with the listener, which must not outlive it.
class router {
public:
    /// Routes are tried in the order added; the first whose pattern matches and that takes
    /// the method wins. Put the hot route first: it then costs one pattern match.
    router& add(method_set methods, std::string_view pattern, std::string_view label,
                route_handler handler, route_options options = {});
    /// Requests whose path no route matches go to `handler` (every method; a body as
    /// `options` says, none by default) instead of a 404: a listener whose handler routes
    /// itself.
    router& set_fallback(route_handler handler, std::string_view label = "other",
                         route_options options = {});
    /// Replaces the default 404/405 answers (make_error_reply with the route's label,
    /// "not_found" for 404).
    router& set_refusal(refusal_fn refusal);

    /// The outcome of routing one request: the route to run (params filled), or the refusal.
    struct decision {
        const route* found = nullptr;
        errc refusal = errc::route_not_found;  ///< when !found
        std::string_view label;                ///< a matched route's, for a 405
        method_set allowed;                    ///< for a 405's Allow
        path_params params;
    };
    decision decide(http::verb method, std::string_view target) const;
    /// The 404/405 reply for a decision without a route.
    reply refuse(const decision& d) const;
    /// The decision carried out: the route's handler with `req` (its params filled in here),
    /// or the refusal.
    handler_result run(const decision& d, request& req) const {
        if (d.found == nullptr) {
            return refuse(d);
        }
        if (d.params.size != 0) {
            req.params = d.params;
        }
        return d.found->handler(req);
    }
    /// decide(), then the route's handler (with params) or the refusal. For callers that do
    /// not read bodies (the admin handler's synchronous answer, tests).
    handler_result dispatch(request req) const;

private:
    std::vector<route> routes_;
    std::optional<route> fallback_;
    refusal_fn refusal_;
};

}  // namespace imagegate::gateway
