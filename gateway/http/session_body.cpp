// Request bodies on a session: the route's body policy applied to a head, and the body
// deadline; see session_body.hpp.
#include "gateway/http/session_body.hpp"

#include "gateway/http/request_head.hpp"

#include <boost/beast/core/string.hpp>

namespace imagegate::gateway::detail {

std::optional<errc> refuse_body(const router::decision& d,
                                const http::request_parser<http::empty_body>& parser) {
    const std::uint64_t limit = d.found != nullptr ? d.found->options.body.max_bytes : 0;
    // No route, a 404/405 or a route without a body: a 400, as a body on GET always was.
    if (limit == 0) {
        return errc::bad_request;
    }
    if (parser.chunked()) {
        if (!d.found->options.body.chunked) {
            return errc::length_required;
        }
        return std::nullopt;  // counted while read (body_limit)
    }
    if (parser.content_length() && *parser.content_length() > limit) {
        return errc::payload_too_large;
    }
    return std::nullopt;
}

std::optional<errc> classify_body_error(const boost::system::error_code& ec) {
    if (ec == http::error::body_limit) {
        return errc::payload_too_large;
    }
    if (ec == beast::error::timeout) {
        return errc::request_timeout;
    }
    // Malformed chunk framing, a chunk line over the buffer: the body cannot be delimited.
    if (ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
        ec != http::error::partial_message && ec != http::error::end_of_stream) {
        return errc::bad_request;
    }
    return std::nullopt;
}

bool expects_continue(const http::request_parser<http::empty_body>& parser) {
    const auto& msg = parser.get();
    if (msg.version() < 11) {
        return false;  // RFC 9110 §10.1.1: ignored from HTTP/1.0 clients
    }
    const auto it = msg.find(http::field::expect);
    return it != msg.end() && boost::beast::iequals(it->value(), "100-continue");
}

struct body_deadline::state {
    explicit state(tcp::socket& s) : socket(&s), timer(s.get_executor()) {}
    tcp::socket* socket;  // valid until `done`
    asio::steady_timer timer;
    bool fired = false;
    bool done = false;
};

namespace {

struct on_body_deadline {
    std::shared_ptr<body_deadline::state> st;
    void operator()(const boost::system::error_code& ec) const {
        if (ec || st->done) {
            return;
        }
        st->fired = true;
        boost::system::error_code ignored;
        st->socket->cancel(ignored);  // the pending read completes as aborted
    }
};

}  // namespace

body_deadline::body_deadline(tcp::socket& socket, std::chrono::steady_clock::time_point at)
    : state_(std::make_shared<state>(socket)) {
    state_->timer.expires_at(at);
    state_->timer.async_wait(on_body_deadline{state_});
}

body_deadline::~body_deadline() {
    state_->done = true;
    state_->timer.cancel();
}

bool body_deadline::fired() const noexcept { return state_->fired; }

}  // namespace imagegate::gateway::detail
