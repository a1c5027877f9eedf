// The emulator's server side: connections (TLS or plain, keep-alive, bodies kept or
// streamed, fault actions on the wire) and the public emulator object around the state.
#include "tests/emulator/emulator.hpp"

#include "tests/emulator/state.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>

// GCC 12 false positive: a coroutine's frame comes from asio's awaitable_frame_base::operator
// new (aligned_alloc) and goes back through its operator delete (free); once it inlines the
// delete but not the new into serve()'s ramp it reports a new/free mismatch.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace imagegate::testing {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
using namespace detail;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------
// Connections

namespace {

using request_parser = http::request_parser<sink_body>;

using state_ptr = std::shared_ptr<emulator::state>;
using tls_stream = ssl::stream<beast::tcp_stream>;

// Per-connection data shared between the connection coroutine and stop(); touched only on
// the connection's strand.
template <class Stream>
struct connection {
  template <class... Args>
  explicit connection(Args&&... args)
      : stream(std::forward<Args>(args)...), timer(stream.get_executor()) {}

  // Runs on the strand. A response being written finishes; everything else ends now.
  void stop_now() {
    stopping = true;
    timer.cancel();
    if (!busy || hanging) {
      error_code ec;
      beast::get_lowest_layer(stream).socket().close(ec);
    }
  }

  Stream stream;
  asio::steady_timer timer;  // fault delays
  bool busy = false;         // between request read and response written
  bool hanging = false;
  bool stopping = false;
};

// Registers a connection with the emulator's live set for stop(); unregisters on exit.
template <class Stream>
class live_registration {
 public:
  live_registration(const state_ptr& st, const std::shared_ptr<connection<Stream>>& c) : st_(st) {
    std::weak_ptr<connection<Stream>> weak = c;
    auto ex = c->stream.get_executor();
    std::lock_guard lk(st_->mu);
    id_ = st_->next_connection_id++;
    st_->live.emplace(id_, [weak, ex] {
      asio::post(ex, [weak] {
        if (auto conn = weak.lock()) {
          conn->stop_now();
        }
      });
    });
  }
  ~live_registration() {
    std::lock_guard lk(st_->mu);
    st_->live.erase(id_);
  }
  live_registration(const live_registration&) = delete;
  live_registration& operator=(const live_registration&) = delete;

 private:
  state_ptr st_;
  std::uint64_t id_ = 0;
};

template <class Stream>
constexpr bool is_tls = std::is_same_v<Stream, tls_stream>;

// Ends the connection politely: TLS close_notify (bounded) or a TCP half-close.
template <class Stream>
asio::awaitable<void> close_gracefully(std::shared_ptr<connection<Stream>> c) {
  auto& lowest = beast::get_lowest_layer(c->stream);
  if constexpr (is_tls<Stream>) {
    lowest.expires_after(std::chrono::seconds(2));
    auto [ec] = co_await c->stream.async_shutdown(use_nothrow);
    (void)ec;  // the peer may well have gone already
  } else {
    error_code ec;
    lowest.socket().shutdown(tcp::socket::shutdown_send, ec);
    // Lingering close: a close with unread input would send an RST that can destroy the
    // response still in flight (RFC 9112 §9.6), e.g. after answering an oversized request.
    std::array<char, 4096> sink{};
    lowest.expires_after(std::chrono::seconds(1));
    for (std::size_t drained = 0; !ec && !c->stopping && drained < 1024 * 1024;) {
      auto [rec, rn] = co_await c->stream.async_read_some(asio::buffer(sink), use_nothrow);
      ec = rec;
      drained += rn;
    }
  }
  error_code ec;
  lowest.socket().close(ec);
}

// Writes a header serialised by Beast followed by body bytes we frame ourselves (for
// deliberately wrong framing and for multi-chunk transfer coding).
template <class Stream>
asio::awaitable<error_code> write_raw(std::shared_ptr<connection<Stream>> c,
                                      http::response<http::empty_body> head, std::string bytes) {
  http::response_serializer<http::empty_body> sr{head};
  auto [ec, n] = co_await http::async_write_header(c->stream, sr, use_nothrow);
  if (ec) {
    co_return ec;
  }
  auto [ec2, n2] = co_await asio::async_write(c->stream, asio::buffer(bytes), use_nothrow);
  co_return ec2;
}

http::response<http::empty_body> head_of(const response_t& res) {
  http::response<http::empty_body> head{res.result(), res.version()};
  for (const auto& f : res) {
    head.insert(f.name(), f.name_string(), f.value());
  }
  return head;
}

// The whole response as the bytes Beast's serializer would write, in one buffer: one
// TLS record and one send per answer, at a fraction of the serializer's cost over an
// ssl::stream (the emulator is the shared upstream of the all-miss benchmark).
std::string serialize(const response_t& res) {
  std::size_t size = 32 + res.reason().size() + res.body().size();
  for (const auto& f : res) {
    size += f.name_string().size() + f.value().size() + 4;
  }
  std::string out;
  out.reserve(size);
  out += res.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  std::array<char, 8> code{};
  auto [end, ec] = std::to_chars(code.data(), code.data() + code.size(), res.result_int());
  out.append(code.data(), end);
  out += ' ';
  out += res.reason();
  out += "\r\n";
  for (const auto& f : res) {
    out += f.name_string();
    out += ": ";
    out += f.value();
    out += "\r\n";
  }
  out += "\r\n";
  out += res.body();
  return out;
}

std::string chunk_encode(std::string_view body) {
  std::string out;
  constexpr std::size_t piece = 128;
  for (std::size_t i = 0; i < body.size(); i += piece) {
    auto part = body.substr(i, piece);
    std::array<char, 16> len{};
    auto [p, ec] = std::to_chars(len.data(), len.data() + len.size(), part.size(), 16);
    out.append(len.data(), p);
    out += "\r\n";
    out += part;
    out += "\r\n";
  }
  return out + "0\r\n\r\n";
}

bool is_parse_error(const error_code& ec) {
  return ec && ec.category() == http::make_error_code(http::error::bad_version).category() &&
         ec != http::error::partial_message;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Answers a request that cannot be read (RFC 9112 §2.2: a parse error, or a body over the
// limit) with an envelope; the caller then closes. Not counted as an API request.
template <class Stream>
asio::awaitable<void> refuse(state_ptr st, std::shared_ptr<connection<Stream>> c, unsigned status) {
  response_t res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.body() = error_envelope(status == 400 ? 5400 : 5413, "Bad request");
  res.keep_alive(false);
  res.prepare_payload();
  beast::get_lowest_layer(c->stream).expires_after(st->opts.idle_timeout);
  auto [wec, wn] = co_await http::async_write(c->stream, res, use_nothrow);
  (void)wec;
}

template <class Stream>
asio::awaitable<void> serve(state_ptr st, std::shared_ptr<connection<Stream>> c) {
  live_registration<Stream> reg(st, c);
  if (st->stopping) {
    co_return;
  }
  auto& lowest = beast::get_lowest_layer(c->stream);
  if constexpr (is_tls<Stream>) {
    lowest.expires_after(st->opts.idle_timeout);
    auto [ec] = co_await c->stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (ec) {
      if (st->log->should_log(spdlog::level::debug)) {
        st->log->debug("emulator: handshake failed: {}", ec.message());
      }
      co_return;
    }
  }
  beast::flat_buffer buffer;
  for (;;) {
    c->busy = false;
    if (c->stopping) {
      break;
    }
    request_parser parser;
    parser.header_limit(static_cast<std::uint32_t>(st->opts.header_limit));
    parser.body_limit(boost::none);  // the body_sink enforces the limit of the route
    lowest.expires_after(st->opts.idle_timeout);
    auto [ec, n] = co_await http::async_read_header(c->stream, buffer, parser, use_nothrow);
    if (ec == http::error::end_of_stream) {
      break;
    }
    if (is_parse_error(ec)) {
      co_await refuse(st, c, ec == http::error::header_limit ? 431 : 400);
      break;
    }
    if (ec) {
      co_return;  // timeout, reset, truncated TLS, stop(): nothing to answer
    }
    c->busy = true;
    body_sink body;
    if (!parser.is_done()) {
      st->prepare_body(parser.get(), body);
      if (auto length = parser.content_length(); length && *length > body.read_limit) {
        co_await refuse(st, c, 413);  // refused unread (a 100-continue client sends nothing)
        break;
      }
      if (iequals(parser.get()[http::field::expect], "100-continue")) {
        static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        auto [cec, cn] = co_await asio::async_write(c->stream, asio::buffer(go_on), use_nothrow);
        if (cec) {
          co_return;
        }
      }
      if (body.streamed) {
        // Reads of up to 64 KiB (Beast reads as much as the buffer has room for): megabytes
        // in a few hundred reads, not thousands, still in a bounded window.
        buffer.reserve(64 * 1024);
      }
      parser.get().body() = &body;
      auto [bec, bn] = co_await http::async_read(c->stream, buffer, parser, use_nothrow);
      if (is_parse_error(bec)) {
        co_await refuse(st, c, bec == http::error::body_limit ? 413 : 400);
        break;
      }
      if (bec) {
        co_return;
      }
      body.finish();
      st->note_request_buffer(buffer.capacity() + body.peak_held);
    }
    outcome o = st->handle(parser.get(), body);
    if (o.delay.count() > 0) {
      c->timer.expires_after(o.delay);
      auto [tec] = co_await c->timer.async_wait(use_nothrow);
      (void)tec;
      if (c->stopping) {
        break;
      }
    }
    if (o.act == action::reset) {
      error_code ec2;
      lowest.socket().set_option(asio::socket_base::linger(true, 0), ec2);
      lowest.socket().close(ec2);
      co_return;
    }
    if (o.act == action::hang) {
      // Read (and discard) until the client closes; the response never comes.
      c->hanging = true;
      lowest.expires_never();
      std::array<char, 4096> sink{};
      for (;;) {
        auto [rec, rn] = co_await c->stream.async_read_some(asio::buffer(sink), use_nothrow);
        if (rec) {
          co_return;
        }
      }
    }
    o.res.version(11);
    o.res.keep_alive(!o.close);
    o.res.prepare_payload();
    lowest.expires_after(st->opts.idle_timeout);
    if (o.act == action::truncated) {
      auto head = head_of(o.res);
      std::string half = std::move(o.res.body());
      head.content_length(half.size() + std::max<std::size_t>(half.size(), 1));
      half.resize(half.size() / 2);
      co_await write_raw(c, std::move(head), std::move(half));
      break;
    }
    if (o.act == action::chunked) {
      auto head = head_of(o.res);
      head.erase(http::field::content_length);
      head.chunked(true);
      std::string encoded = chunk_encode(o.res.body());
      auto wec = co_await write_raw(c, std::move(head), std::move(encoded));
      if (wec) {
        co_return;
      }
    } else {
      const std::string bytes = serialize(o.res);
      auto [wec, wn] = co_await asio::async_write(c->stream, asio::buffer(bytes), use_nothrow);
      if (wec) {
        co_return;
      }
    }
    if (o.close) {
      break;
    }
  }
  co_await close_gracefully(c);
}

// Completion handler of every coroutine the emulator spawns: exceptions are logged and
// counted, never silently dropped.
struct log_failure {
  state_ptr st;
  const char* what;
  void operator()(const std::exception_ptr& e) const {
    if (!e) {
      return;
    }
    ++st->session_errors;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      st->log->error("emulator: {} failed: {}", what, ex.what());
    } catch (...) {
      st->log->error("emulator: {} failed", what);
    }
  }
};

// Spawns the connection's coroutine on the socket's executor (its strand, unless single
// threaded).
void start_connection(const state_ptr& st, tcp::socket socket) {
  auto ex = socket.get_executor();
  if (st->opts.tls) {
    auto c =
        std::make_shared<connection<tls_stream>>(beast::tcp_stream(std::move(socket)), st->ssl_ctx);
    asio::co_spawn(ex, serve(st, std::move(c)), log_failure{st, "connection"});
  } else {
    auto c = std::make_shared<connection<beast::tcp_stream>>(std::move(socket));
    asio::co_spawn(ex, serve(st, std::move(c)), log_failure{st, "connection"});
  }
}

asio::awaitable<void> accept_loop(state_ptr st) {
  for (;;) {
    tcp::socket socket =
        st->opts.single_threaded ? tcp::socket(st->ex) : tcp::socket(asio::make_strand(st->ex));
    auto [ec] = co_await st->acceptor.async_accept(socket, use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || st->stopping || !st->acceptor.is_open()) {
        co_return;
      }
      // EMFILE and friends: back off instead of spinning.
      st->log->warn("emulator: accept failed: {}", ec.message());
      asio::steady_timer backoff(st->acceptor.get_executor(), std::chrono::milliseconds(50));
      auto [bec] = co_await backoff.async_wait(use_nothrow);
      (void)bec;
      continue;
    }
    ++st->connections;
    start_connection(st, std::move(socket));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// emulator

emulator::emulator(asio::any_io_executor ex, emulator_options opts)
    : state_(std::make_shared<state>(std::move(ex), std::move(opts))) {}

emulator::~emulator() { stop(); }

void emulator::start() {
  auto& st = *state_;
  tcp::endpoint ep(asio::ip::make_address(st.opts.host), st.opts.port);
  st.acceptor.open(ep.protocol());
  st.acceptor.set_option(asio::socket_base::reuse_address(true));
  st.acceptor.bind(ep);
  st.acceptor.listen(asio::socket_base::max_listen_connections);
  st.port = st.acceptor.local_endpoint().port();
  asio::co_spawn(st.acceptor.get_executor(), accept_loop(state_),
                 log_failure{state_, "accept loop"});
}

void emulator::stop() {
  if (state_->stopping.exchange(true)) {
    return;
  }
  asio::post(state_->acceptor.get_executor(), [st = state_] {
    error_code ec;
    st->acceptor.close(ec);
  });
  std::vector<std::function<void()>> closers;
  {
    std::lock_guard lk(state_->mu);
    for (auto& [id, closer] : state_->live) {
      closers.push_back(closer);
    }
  }
  for (auto& closer : closers) {
    closer();
  }
}

std::uint16_t emulator::port() const noexcept { return state_->port; }

std::string emulator::base_url() const {
  std::string host = state_->opts.host.find(':') != std::string::npos
                         ? '[' + state_->opts.host + ']'
                         : state_->opts.host;
  return std::string(state_->opts.tls ? "https://" : "http://") + host + ':' +
         std::to_string(port()) + "/client/v4";
}

const std::string& emulator::ca_pem() const noexcept { return state_->opts.certs.ca_cert_pem; }

const std::string& emulator::token() const noexcept { return state_->opts.token; }

std::vector<std::string> emulator::image_ids(std::string_view account) const {
  std::vector<std::string> ids;
  std::lock_guard lk(state_->mu);
  auto it = state_->accounts.find(account);
  if (it != state_->accounts.end()) {
    for (const auto& [id, img] : it->second.images) {
      ids.push_back(id);
    }
  }
  return ids;
}

void emulator::add_fault(fault_rule rule) {
  if (rule.times && *rule.times == 0) {
    return;
  }
  std::lock_guard lk(state_->mu);
  state_->faults.push_back(std::move(rule));
}

void emulator::clear_faults() {
  std::lock_guard lk(state_->mu);
  state_->faults.clear();
}

emulator_stats emulator::snapshot() const {
  emulator_stats s;
  s.requests = state_->requests;
  s.tripped = state_->tripped;
  s.faults_applied = state_->faults_applied;
  s.connections_accepted = state_->connections;
  s.uploads = state_->uploads;
  s.max_request_buffer = state_->max_request_buffer;
  std::lock_guard lk(state_->mu);
  s.by_status = state_->by_status;
  s.by_method.insert(state_->by_method.begin(), state_->by_method.end());
  s.by_image.insert(state_->by_image.begin(), state_->by_image.end());
  s.by_listing_token.insert(state_->by_listing.begin(), state_->by_listing.end());
  return s;
}

std::uint64_t emulator::requests_for(std::string_view image_id) const {
  std::lock_guard lk(state_->mu);
  auto it = state_->by_image.find(image_id);
  return it == state_->by_image.end() ? 0 : it->second;
}

std::uint64_t emulator::requests_with(std::string_view secret) const {
  std::lock_guard lk(state_->mu);
  auto it = state_->by_secret.find(secret);
  return it == state_->by_secret.end() ? 0 : it->second;
}

std::uint64_t emulator::connections_accepted() const noexcept { return state_->connections; }

std::uint64_t emulator::tripped() const noexcept { return state_->tripped; }

std::vector<upload_record> emulator::uploads() const {
  std::lock_guard lk(state_->mu);
  return {state_->upload_log.begin(), state_->upload_log.end()};
}

std::optional<upload_record> emulator::upload_of(std::string_view id) const {
  std::lock_guard lk(state_->mu);
  for (auto it = state_->upload_log.rbegin(); it != state_->upload_log.rend(); ++it) {
    if (it->id == id) {
      return *it;
    }
  }
  return std::nullopt;
}

std::vector<call_record> emulator::calls() const {
  std::lock_guard lk(state_->mu);
  return state_->calls.since(std::chrono::microseconds(-1));
}

void emulator::reset_counters() { state_->reset_counters(); }

void emulator::reset() { state_->reset_all(); }

}  // namespace imagegate::testing