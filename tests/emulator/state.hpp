// The emulator's shared state and request-handling interface, internal to tests/emulator:
// the image store, counters, limiter, faults, and what the connections hand to the handlers.
#pragma once

#include "tests/emulator/digest.hpp"
#include "tests/emulator/emulator.hpp"
#include "tests/emulator/limiter.hpp"
#include "tests/emulator/multipart.hpp"
#include "tests/emulator/render.hpp"
#include "tests/emulator/route.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <set>

namespace spdlog {
class logger;
}

namespace imagegate::testing::detail {

namespace http = boost::beast::http;
using response_t = http::response<http::string_body>;
using clock_type = std::chrono::steady_clock;

struct account_store {
  std::string hash;
  std::map<std::string, image, std::less<>> images;
  std::set<std::string, std::less<>> deleted;  // tombstones for any_image_exists
};

// What the connection coroutine does with a handled request.
enum class action {
  respond,    // write `res`
  reset,      // RST the connection
  hang,       // read until the client goes away
  truncated,  // header with the full Content-Length, then half the body, then close
  chunked,    // the body with Transfer-Encoding: chunked
};

struct outcome {
  action act = action::respond;
  response_t res;
  bool close = false;
  std::chrono::milliseconds delay{0};
};

// Where a request's body goes, chosen once its header is known (state::prepare_body):
// kept as text up to body_limit, or streamed (counted, hashed, multipart-parsed for an
// upload) up to upload_limit. Owned by the connection for one request.
struct body_sink {
  bool streamed = false;
  std::uint64_t limit = 0;       // bytes accepted; beyond: too_large, the rest discarded
  std::uint64_t read_limit = 0;  // bytes read at all; beyond: stop reading (then close)
  std::string text;              // the body when not streamed
  std::uint64_t bytes = 0;
  bool too_large = false;
  std::optional<sha256> hash;            // streamed
  std::optional<multipart_reader> form;  // a multipart upload
  std::string sha256_hex;                // streamed, set by finish()
  std::size_t peak_held = 0;             // most bytes this sink held at once

  // Takes one piece of the body; false: the read must stop (read_limit passed).
  bool consume(std::string_view piece);
  // The body is complete.
  void finish();
};

// A request body handed piece by piece to the body_sink state::prepare_body chose, so an
// upload of megabytes passes through a window of the read buffer's size.
struct sink_body {
  using value_type = body_sink*;

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(http::header<isRequest, Fields>&, value_type& sink) : sink_(sink) {}

    void init(const boost::optional<std::uint64_t>&, boost::system::error_code& ec) { ec = {}; }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
      ec = {};
      std::size_t n = 0;
      for (auto b : boost::beast::buffers_range_ref(buffers)) {
        if (!sink_->consume({static_cast<const char*>(b.data()), b.size()})) {
          ec = http::error::body_limit;
          return n;
        }
        n += b.size();
      }
      return n;
    }

    void finish(boost::system::error_code& ec) { ec = {}; }

   private:
    value_type& sink_;
  };
};

using request_t = http::request<sink_body>;

// A continuation token of the v2 listing: where the next page starts.
struct list_cursor {
  std::string account;
  std::string last_id;
  bool desc = false;
};

// Cap on distinct ids in the per-image counter, so a flood with any_image_exists cannot grow
// the map without bound.
inline constexpr std::size_t max_counted_ids = 100000;
inline constexpr std::size_t max_upload_records = 1000;
inline constexpr std::size_t max_cursors = 100000;

}  // namespace imagegate::testing::detail

namespace imagegate::testing {

// Shared state. The connection coroutines hold it by shared_ptr so the emulator object may
// go away before the io_context has finished them. Members after `mu` are guarded by it.
struct emulator::state {
  using request_t = detail::request_t;
  using response_t = detail::response_t;
  using account_store = detail::account_store;
  using body_sink = detail::body_sink;
  using outcome = detail::outcome;
  using image = detail::image;
  using render_tweaks = detail::render_tweaks;

  state(asio::any_io_executor exec, emulator_options o);

  void seed_store();
  void count_status(unsigned s);
  void count_secret(const request_t& req);
  void count_image(const std::string& id);
  std::optional<fault_rule> take_fault(const std::string* id);
  // Every API response carries these, as the real one does. `res` has none of them yet
  // (a non-JSON answer has set its own Content-Type).
  void api_headers(response_t& res, const limiter_verdict& v);
  static response_t make_response(unsigned status, std::string body);
  void note_request_buffer(std::size_t bytes);
  void reset_counters();
  void reset_all();

  // Chooses where the body of a request with this header goes.
  void prepare_body(const request_t& req, body_sink& body) const;
  outcome handle(const request_t& req, const body_sink& body);
  outcome handle_control(const request_t& req, const body_sink& body);
  outcome handle_api(const request_t& req, const body_sink& body);
  response_t route(const request_t& req, const api_route& r, std::string_view path,
                   std::string_view query, const body_sink& body, const render_tweaks& tw);
  // The handlers below require mu held.
  response_t image_request(const request_t& req, account_store& acc, const std::string& id,
                           const body_sink& body, const render_tweaks& tw);
  response_t list_images_v2(const std::string& account, std::string_view query);
  response_t list_images_v1(const account_store& acc, std::string_view query);
  response_t patch_image(account_store& acc, const std::string& id, std::string_view body,
                         const render_tweaks& tw);
  response_t upload_image(account_store& acc, std::string_view account, const request_t& req,
                          const body_sink& body);
  response_t sibling(const api_route& r, const account_store& acc, std::string_view account);
  image* find_image(account_store& acc, const std::string& id);
  const image* peek_image(account_store& acc, const std::string& id, image& scratch);
  static response_t echo(const request_t& req, std::string_view path, std::string_view query,
                         const body_sink& body);

  std::string stats_json();
  std::string calls_json(std::string_view query);
  std::string uploads_json();
  std::optional<std::string> parse_fault_json(const std::string& body, fault_rule& out);

  asio::any_io_executor ex;
  emulator_options opts;
  std::shared_ptr<spdlog::logger> log;
  asio::ssl::context ssl_ctx;
  asio::ip::tcp::acceptor acceptor;  // on its own strand; touched there after start()
  const detail::clock_type::time_point started = detail::clock_type::now();
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> stopping{false};

  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> tripped{0};
  std::atomic<std::uint64_t> faults_applied{0};
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> session_errors{0};
  std::atomic<std::uint64_t> response_serial{0};
  std::atomic<std::uint64_t> uploads{0};
  std::atomic<std::uint64_t> max_request_buffer{0};

  mutable std::mutex mu;  // guards everything below; never held across a co_await
  std::map<unsigned, std::uint64_t> by_status;
  std::map<std::string, std::uint64_t, std::less<>> by_image;
  std::map<std::string, std::uint64_t, std::less<>> by_secret;  // see count_secret
  std::map<std::string, std::uint64_t, std::less<>> by_method;
  std::map<std::string, std::uint64_t, std::less<>> by_listing;  // v2 pages per token
  std::vector<fault_rule> faults;
  rate_limiter limiter;
  call_log calls;
  std::map<std::string, account_store, std::less<>> accounts;
  std::deque<upload_record> upload_log;
  std::uint64_t upload_rng = 0;
  std::map<std::string, detail::list_cursor, std::less<>> cursors;  // v2 continuation tokens
  std::deque<std::string> cursor_order;                             // oldest first
  std::uint64_t next_connection_id = 0;
  // Per live connection: posts a "stop" to the connection's strand.
  std::map<std::uint64_t, std::function<void()>> live;
};

}  // namespace imagegate::testing
