// The forwarding handler: authorization, a slot from the gate, one upstream call with the
// body streamed up and the answer streamed back, the answer's rate-limit signals to the gate.
#include "gateway/forward/handler.hpp"

#include "gateway/admission/gate.hpp"
#include "gateway/auth/authorizer.hpp"
#include "gateway/core/request_target.hpp"
#include "gateway/forward/stats.hpp"
#include "gateway/http/envelope.hpp"
#include "gateway/image/writes.hpp"
#include "gateway/shield/time.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/upstream/forward_headers.hpp"

#include <spdlog/spdlog.h>

namespace imagegate::gateway {

namespace {

// Cache-Status (RFC 9211): the gateway's cache did not take part.
constexpr std::string_view cs_line = "Cache-Status: imagegate; fwd=bypass\r\n";
constexpr std::string_view cs_forwarded = "fwd=bypass";
constexpr std::string_view cs_refused = "fwd=bypass; detail=refused";
constexpr std::string_view cs_failed = "fwd=bypass; detail=error";
constexpr std::string_view cs_cut = "fwd=bypass; detail=cut";

reply gateway_refusal(errc e, std::optional<shield::retry_advice> retry = std::nullopt) {
    std::optional<retry_after> after;
    if (retry) {
        after =
            retry_after{.seconds = static_cast<std::uint64_t>(retry->seconds.count()),
                        .milliseconds = static_cast<std::uint64_t>(retry->milliseconds.count())};
    }
    reply r = make_error_reply(e, cs_line, after);
    r.route = "forward";
    r.cache_status = cs_refused;
    return r;
}

// A refused forward: the envelope names the setting that would allow it (authorizer.hpp).
reply forward_refusal_reply(const forward_decision& d) {
    std::string extra(cs_line);
    if (!retry_may_help(d.error)) {
        extra += "x-should-retry: false\r\n";
    }
    if (d.verdict == forward_verdict::unauthorized) {
        extra += "WWW-Authenticate: Bearer realm=\"imagegate\"\r\n";
    }
    reply r =
        make_reply(to_http_status(d.error), error_envelope(to_envelope_code(d.error), d.message),
                   "application/json", extra);
    r.route = "forward";
    r.cache_status = cs_refused;
    return r;
}

// The client's streamed body as the upstream client pulls it.
class client_body final : public upstream::forward_body {
public:
    client_body(body_source& src, forward_stats& stats) : src_(src), stats_(stats) {}
    asio::awaitable<boost::system::result<std::span<const char>>> next() override {
        auto got = co_await src_.next();
        if (got) {
            stats_.request_bytes.fetch_add(got->size(), std::memory_order_relaxed);
        }
        co_return got;
    }

private:
    body_source& src_;
    forward_stats& stats_;
};

// The answer written to the client as it comes; keeps the head's rate-limit values for the
// gate.
class client_sink final : public upstream::forward_sink {
public:
    client_sink(reply_stream& out, forward_stats& stats) : out_(out), stats_(stats) {}
    asio::awaitable<bool> on_head(const upstream::forward_head& h) override {
        head = h;
        got_head = true;
        std::string lines = h.header_lines;
        lines += cs_line;
        co_return co_await out_.start(h.status, lines, h.content_length);
    }
    asio::awaitable<bool> on_body(std::span<const char> bytes) override {
        stats_.response_bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
        co_return co_await out_.write(bytes);
    }
    upstream::forward_head head;
    bool got_head = false;

private:
    reply_stream& out_;
    forward_stats& stats_;
};

// Without a reply stream (a route that does not stream): the answer kept whole, up to a
// bound, and returned as one reply.
class buffered_sink final : public upstream::forward_sink {
public:
    buffered_sink(std::size_t limit, forward_stats& stats) : limit_(limit), stats_(stats) {}
    asio::awaitable<bool> on_head(const upstream::forward_head& h) override {
        head = h;
        got_head = true;
        co_return true;
    }
    asio::awaitable<bool> on_body(std::span<const char> bytes) override {
        stats_.response_bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
        if (body.size() + bytes.size() > limit_) {
            co_return false;
        }
        body.append(bytes.data(), bytes.size());
        co_return true;
    }
    upstream::forward_head head;
    std::string body;
    bool got_head = false;

private:
    std::size_t limit_;
    forward_stats& stats_;
};

/// Answers kept whole when the route cannot stream (image-route siblings: keys, stats).
constexpr std::size_t buffered_answer_limit = 4 * 1024 * 1024;

}  // namespace

struct forward_handler::impl {
    impl(upstream::client& c, std::shared_ptr<admission::gate> g, const authorizer& a,
         forward_options o, std::shared_ptr<spdlog::logger> l)
        : client(c), gate(std::move(g)), auth(a), opts(std::move(o)), log(std::move(l)) {}
    upstream::client& client;
    std::shared_ptr<admission::gate> gate;
    const authorizer& auth;
    forward_options opts;
    std::shared_ptr<spdlog::logger> log;
    forward_stats stats;
};

namespace {

struct caller {
    std::shared_ptr<const upstream::credential> cred;  // passthrough only
    credential_digest digest{};
};

reply body_failure(forward_handler::impl& s, const boost::system::error_code& ec) {
    s.stats.count(forward_refused::body);
    if (ec.category() == imagegate_category()) {
        reply r = gateway_refusal(static_cast<errc>(ec.value()));
        r.close = true;
        return r;
    }
    // The client left mid-body: nobody reads this.
    reply r;
    r.status = 499;
    r.route = "forward";
    r.cache_status = "client-gone";
    r.close = true;
    return r;
}

asio::awaitable<reply> run_forward(std::shared_ptr<forward_handler::impl> self, request req,
                                   caller who, std::string_view target) {
    auto& s = *self;
    const credential_digest* digest = who.cred ? &who.digest : nullptr;
    // A slot first, as a miss does: foreground, the same queue cap, a truthful Retry-After.
    admission::call c;
    c.prio = shield::priority::foreground;
    c.max_wait = s.opts.max_queue_wait;
    c.credential = digest;
    // A passthrough credential the gateway has not seen accepted shares the budget of
    // unproven credentials (the forward path keeps no proofs of its own).
    c.proven = digest == nullptr;
    admission::ticket t = co_await s.gate->reserve(c);
    if (!t.granted()) {
        const bool paused = t.reason() == admission::refusal::paused;
        s.stats.count(paused ? forward_refused::paused : forward_refused::budget);
        co_return gateway_refusal(paused ? errc::upstream_rate_limited : errc::budget_exhausted,
                                  shield::advise_retry(t.retry_wait(), t.held()));
    }
    if (t.slot() > s.opts.time->now()) {
        if (!co_await t.wait()) {
            t.release();
            co_return gateway_refusal(errc::budget_exhausted);
        }
    }

    upstream::forward_request fr;
    fr.method = req.method;
    fr.target = std::string(target);
    if (req.headers != nullptr) {
        fr.header_lines = upstream::forward_request_headers(*req.headers);
    }
    std::optional<client_body> body;
    if (req.body_stream != nullptr) {
        fr.has_body = true;
        fr.content_length = req.body_stream->content_length();
        body.emplace(*req.body_stream, s.stats);
    }
    // The body may take body_timeout to arrive; the upstream then has request_timeout.
    const auto deadline = std::chrono::steady_clock::now() + s.opts.request_timeout +
                          (body ? s.opts.body_timeout : std::chrono::milliseconds(0));
    std::optional<client_sink> streamed;
    std::optional<buffered_sink> buffered;
    upstream::forward_sink* sink = nullptr;
    // An image write keeps the cache right (image/writes.hpp): it needs the whole answer, so
    // it is kept (bounded) and written to the client once finish() ran.
    const auto write =
        s.opts.writes != nullptr ? classify_write(req.method, req.target) : std::nullopt;
    if (req.reply_out != nullptr && !write) {
        sink = &streamed.emplace(*req.reply_out, s.stats);
    } else {
        sink = &buffered.emplace(buffered_answer_limit, s.stats);
    }
    std::optional<write_ticket> ticket;
    if (write) {
        ticket = s.opts.writes->begin(*write);  // from now on no earlier fill may store
    }
    t.commit();  // right before the call: the slot is spent
    auto res =
        co_await s.client.forward(std::move(fr), body ? &*body : nullptr, sink, deadline, who.cred);
    const upstream::forward_head* head = streamed ? (streamed->got_head ? &streamed->head : nullptr)
                                         : buffered
                                             ? (buffered->got_head ? &buffered->head : nullptr)
                                             : nullptr;
    if (head != nullptr) {
        const auto paused = s.gate->observe(
            digest, {head->status, head->retry_after, head->ratelimit, head->ratelimit_policy});
        if (head->status == 429) {
            s.log->warn("upstream answered 429 to a forwarded {}: pausing upstream calls{}",
                        std::string_view(http::to_string(req.method)),
                        paused ? "" : " (no pause derived)");
        }
    }
    if (ticket) {
        write_outcome o;
        if (res && res->complete && !res->stopped_by_sink) {
            o.status = res->status;
            o.body = buffered->body;
            o.facts = {.fresh_connection = res->fresh_connection,
                       .framed = res->clean,
                       .trailing_bytes = false,
                       .interim_responses = 0};
        }
        if (digest != nullptr) {
            o.cred = *digest;
        }
        co_await s.opts.writes->finish(std::move(*ticket), o);
    }
    if (!res) {
        const auto ec = res.error();
        if (body && req.body_stream->done() == false && ec.category() != imagegate_category()) {
            co_return body_failure(s, ec);  // the client left mid-body
        }
        if (ec == errc::payload_too_large || ec == errc::request_timeout ||
            ec == errc::bad_request) {
            co_return body_failure(s, ec);
        }
        s.stats.count_call(req.method, 0);
        const errc e = ec.category() == imagegate_category() ? static_cast<errc>(ec.value())
                                                             : errc::internal_error;
        reply r = gateway_refusal(e);
        r.cache_status = cs_failed;
        r.close = body.has_value() && !req.body_stream->done();
        co_return r;
    }
    s.stats.count_call(req.method, res->status);
    reply r;
    r.status = res->status;
    r.route = "forward";
    r.cache_status = cs_forwarded;
    if (streamed) {
        bool whole = res->complete && !res->stopped_by_sink;
        if (whole) {
            whole = co_await req.reply_out->finish();
        }
        if (!whole) {
            s.stats.cut.fetch_add(1, std::memory_order_relaxed);
            r.cache_status = cs_cut;
            r.close = true;
        }
        co_return r;
    }
    if (!res->complete || res->stopped_by_sink) {
        s.stats.cut.fetch_add(1, std::memory_order_relaxed);
        reply err = gateway_refusal(res->stopped_by_sink ? errc::upstream_too_large
                                                         : errc::upstream_protocol_error);
        err.cache_status = cs_failed;
        co_return err;
    }
    std::string lines = buffered->head.header_lines;
    lines += cs_line;
    reply whole;
    whole.status = res->status;
    append_status_line(whole.head, res->status);
    whole.head += lines;
    whole.head += "Content-Length: ";
    whole.head += std::to_string(buffered->body.size());
    whole.head += "\r\n";
    whole.set_body(std::move(buffered->body));
    whole.route = "forward";
    whole.cache_status = cs_forwarded;
    co_return whole;
}

}  // namespace

forward_handler::forward_handler(upstream::client& client, std::shared_ptr<admission::gate> gate,
                                 const authorizer& auth, forward_options opts,
                                 std::shared_ptr<spdlog::logger> log)
    : impl_(
          std::make_shared<impl>(client, std::move(gate), auth, std::move(opts), std::move(log))) {}

forward_handler::~forward_handler() = default;

route_options forward_handler::route() const {
    route_options o;
    o.body.max_bytes = impl_->opts.max_body_bytes;
    o.body.chunked = true;
    o.body.streaming = true;
    o.body.streaming_reply = true;
    o.body.timeout = impl_->opts.body_timeout;
    return o;
}

void forward_handler::render_metrics(std::string& out) const { impl_->stats.render(out); }

handler_result forward_handler::handle(const request& req) {
    auto& s = *impl_;
    // Origin-form (path and query) of an origin- or absolute-form target the session accepted.
    std::string_view origin = req.target;
    if (!origin.starts_with('/')) {
        const std::size_t start = target_path_start(origin);
        origin = start == std::string_view::npos ? std::string_view() : origin.substr(start);
    }
    const std::string_view path = origin.substr(0, origin.find('?'));
    const std::string_view base = s.opts.base_path;
    if (!path.starts_with(base) || path.size() <= base.size() || path[base.size()] != '/') {
        reply r = make_error_reply(errc::route_not_found);
        r.route = "not_found";
        return r;
    }
    // What goes upstream after the base path, query included, exactly as the client spelled
    // it (custom ids in raw segments too: the upstream decides what they mean).
    const std::string_view target = origin.substr(base.size());
    caller who;
    if (s.opts.passthrough) {
        const caller_credential cc = read_caller_credential(req.headers);
        if (cc.state == caller_credential::status::missing) {
            s.stats.count(forward_refused::unauthorized);
            reply r = gateway_refusal(errc::unauthorized);
            r.head += "WWW-Authenticate: Bearer realm=\"imagegate\"\r\n";
            return r;
        }
        if (cc.state == caller_credential::status::malformed) {
            s.stats.count(forward_refused::unauthorized);
            return gateway_refusal(errc::bad_request);
        }
        who.cred = cc.cred;
        who.digest = cc.digest;
    } else {
        const forward_decision d = s.auth.decide_forward(
            req.headers, req.method, path.substr(base.size()), req.loopback_peer);
        if (d.verdict != forward_verdict::allowed) {
            s.stats.count(d.verdict == forward_verdict::unauthorized ? forward_refused::unauthorized
                          : d.verdict == forward_verdict::not_granted
                              ? forward_refused::not_granted
                              : forward_refused::forbidden_account);
            return forward_refusal_reply(d);
        }
    }
    return run_forward(impl_, req, std::move(who), target);
}

}  // namespace imagegate::gateway
