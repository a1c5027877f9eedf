// An in-process emulator of the Cloudflare Images API (details, upload, PATCH, DELETE,
// listings, siblings, an echo for every other API path) with the real envelope, headers, auth
// errors and rate limiting, plus faults and counters so tests can assert what arrived.
#pragma once

#include "gateway/core/net.hpp"
#include "tests/emulator/limiter.hpp"
#include "tests/emulator/pki.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::testing {

/// One more credential the emulator accepts besides `emulator_options::token`: a Bearer
/// token, or (when `token` is empty) an `X-Auth-Email` + `X-Auth-Key` pair.
struct emulator_credential {
  std::string token;  ///< `Authorization: Bearer <token>`; empty for an email + key pair
  std::string email;  ///< `X-Auth-Email`
  std::string key;    ///< `X-Auth-Key`
  /// Accounts it may read (403 code 10000 for any other); empty: every account.
  std::vector<std::string> accounts;
};

/// Construction-time settings; immutable once the emulator exists.
struct emulator_options {
  std::string host = "127.0.0.1";        ///< address to bind
  std::uint16_t port = 0;                ///< 0: pick a free port, read it back with port()
  bool tls = true;                       ///< false: plain HTTP (only when explicitly asked)
  pki certs;                             ///< server certificate; generated when empty
  std::string token = "emulator-token";  ///< accepted `Authorization: Bearer` token, any account
  /// Further accepted credentials, each limited to its accounts.
  std::vector<emulator_credential> credentials;
  /// Status for a well-formed but unknown credential, with code 10000 "Authentication
  /// error": Cloudflare answers 403 or 401 (upstream-api.md); 403 by default.
  unsigned unknown_credential_status = 403;
  /// Known account ids; any other answers 7003.
  std::vector<std::string> accounts = {"023e105f4ecef8ad9ca31a8372d0c353"};
  std::size_t image_count = 100;  ///< seeded images per account
  /// Further ids seeded in every account besides the generated ones (custom ids, e.g.
  /// `folder/sub/x`), with records generated from the id like the others.
  std::vector<std::string> custom_ids;
  std::uint64_t seed = 1;           ///< the seeded set and generated records derive from it
  bool any_image_exists = false;    ///< every id exists (record derived from the id, not stored)
  std::uint64_t rate_limit = 1200;  ///< requests per window per token
  std::chrono::milliseconds rate_window = std::chrono::minutes(5);     ///< limiter window
  std::chrono::milliseconds block_duration = std::chrono::minutes(5);  ///< 429 period
  /// Fixed window (the default) or sliding window (at most rate_limit calls in any
  /// rate_window; Cloudflare's rule as the soak checks it).
  limiter_mode rate_limit_mode = limiter_mode::fixed_window;
  /// Calls kept for /__emulator/calls and calls() (the newest ones).
  std::size_t call_log_capacity = 100000;
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(30);  ///< per read/handshake
  std::size_t header_limit = 16 * 1024;                               ///< request header bytes
  /// Body bytes of requests read whole (PATCH, control endpoints, image routes).
  std::size_t body_limit = 64 * 1024;
  /// Body bytes of uploads (`POST …/images/v1`) and echoed requests, which are streamed
  /// (hashed as they arrive, never held): Cloudflare's 10 MB plus room for the multipart
  /// framing. Over it: 413 (the body is read and discarded up to 4x this, else the
  /// connection closes).
  std::size_t upload_limit = 10 * 1024 * 1024 + 64 * 1024;
  std::shared_ptr<spdlog::logger> log;  ///< null: spdlog's default logger
  /// Exactly one thread runs the executor's io_context: connections then run on it
  /// directly, without a strand each (the benchmark's upstream; `--threads 1`).
  bool single_threaded = false;
};

/// What a fault rule does to the response of a request it matches.
enum class fault_kind {
  delay,         ///< wait `delay` then answer normally
  status,        ///< answer `status` (5xx) with a 5500/5503 envelope
  rate_limited,  ///< answer 429 code 971 with `Retry-After: retry_after`
  reset,         ///< abort the TCP connection (SO_LINGER 0, then close: RST)
  truncated,     ///< Content-Length larger than the body sent, then close
  invalid_json,  ///< a syntactically broken body with a correct Content-Length
  wrong_id,      ///< a valid envelope whose result.id differs from the requested id
  wrong_types,   ///< a valid envelope with mistyped fields ("requireSignedURLs":"yes", …)
  chunked,       ///< the normal body, sent with Transfer-Encoding: chunked
  oversized,     ///< the normal envelope padded (in meta) to `size` bytes
  close,         ///< the normal answer with `Connection: close`, then close
  hang,          ///< never answer; wait until the client closes the connection
};

std::string_view to_string(fault_kind k) noexcept;
std::optional<fault_kind> parse_fault_kind(std::string_view s) noexcept;

/// One scripted fault. Rules are tried in insertion order; the first that matches a request
/// and has uses left applies, and uses one. Control endpoints are never faulted.
struct fault_rule {
  fault_kind kind = fault_kind::delay;
  /// Decoded image id to match; empty matches every API request whatever its id.
  std::string image_id;
  /// How many matching requests it applies to; nullopt: until cleared.
  std::optional<std::uint64_t> times;
  /// Waited before acting, for every kind (for `delay` it is the whole fault).
  std::chrono::milliseconds delay{0};
  /// for `status`: 500 → code 5500, 503 → 5503, other 5xx → 5500; 401/403 → code 10000
  unsigned status = 500;
  std::uint64_t retry_after = 1;   ///< for `rate_limited`: Retry-After seconds
  std::size_t size = 1024 * 1024;  ///< for `oversized`: body bytes at least
};

/// Counter snapshot. Counters cover API requests only (not /__emulator/*).
struct emulator_stats {
  std::uint64_t requests = 0;              ///< API requests parsed
  std::uint64_t tripped = 0;               ///< 429 code 971 sent by the rate limiter
  std::uint64_t faults_applied = 0;        ///< requests a fault rule matched
  std::uint64_t connections_accepted = 0;  ///< TCP connections accepted (incl. control)
  std::uint64_t uploads = 0;               ///< images created by POST …/images/v1
  /// The most bytes held at once for one request body (read buffer, kept text, multipart
  /// window and fields): a streamed upload keeps this far below its size.
  std::uint64_t max_request_buffer = 0;
  std::map<unsigned, std::uint64_t> by_status;     ///< responses sent, by HTTP status
  std::map<std::string, std::uint64_t> by_image;   ///< requests per decoded image id
  std::map<std::string, std::uint64_t> by_method;  ///< requests per HTTP method
  /// v2 listing pages served, per continuation_token ("" for the first page).
  std::map<std::string, std::uint64_t> by_listing_token;
};

/// What an accepted upload carried (the bytes themselves are never kept).
struct upload_record {
  std::string account;
  std::string id;                 ///< the created image's id
  std::uint64_t body_bytes = 0;   ///< the whole multipart body
  bool from_url = false;          ///< created from a `url` part instead of a `file` part
  std::string url;                ///< the `url` part
  std::uint64_t file_bytes = 0;   ///< the `file` part's content length
  std::string file_sha256;        ///< hex SHA-256 of the `file` part's content
  std::string file_name;          ///< its Content-Disposition filename
  std::string file_content_type;  ///< its Content-Type
};

/// The emulator server. Owned by the test (or main); it runs on the executor it is given,
/// which may be a multi-threaded io_context: each connection runs on its own strand (unless
/// emulator_options::single_threaded says one thread runs it).
///
/// Thread-safety: every member function may be called from any thread, concurrently with the
/// io_context running (state is mutex-guarded or atomic). start() must be called once.
/// Destroying the emulator calls stop(); connections still open then end when the
/// io_context runs them to completion or is destroyed.
class emulator {
 public:
  emulator(asio::any_io_executor ex, emulator_options opts);
  ~emulator();
  emulator(const emulator&) = delete;
  emulator& operator=(const emulator&) = delete;

  /// Binds and listens synchronously (so port() is valid on return), then accepts.
  /// Throws boost::system::system_error if the address cannot be bound.
  void start();
  /// Stops accepting, closes idle connections, lets a response being written finish,
  /// cancels delays and hangs. Asynchronous and idempotent: returns at once; the
  /// io_context runs out of emulator work shortly after.
  void stop();

  std::uint16_t port() const noexcept;
  /// "https://127.0.0.1:PORT/client/v4" (or http://…).
  std::string base_url() const;
  const std::string& ca_pem() const noexcept;
  const std::string& token() const noexcept;

  /// Ids of the images currently present for `account` (seeded set minus deletes), sorted.
  std::vector<std::string> image_ids(std::string_view account) const;

  void add_fault(fault_rule rule);
  void clear_faults();

  emulator_stats snapshot() const;
  std::uint64_t requests_for(std::string_view image_id) const;
  /// API requests that presented `secret` as their Bearer token or X-Auth-Key (accepted or
  /// not); the first 1000 distinct secrets are counted.
  std::uint64_t requests_with(std::string_view secret) const;
  std::uint64_t connections_accepted() const noexcept;
  std::uint64_t tripped() const noexcept;
  /// The last 1000 accepted uploads, oldest first.
  std::vector<upload_record> uploads() const;
  /// The newest accepted upload that created `id`, if it is still among the last 1000.
  std::optional<upload_record> upload_of(std::string_view id) const;
  /// API calls as the rate limiter saw them (accepted or refused with 429 code 971), the
  /// newest `call_log_capacity`, oldest first; times since the emulator was constructed.
  std::vector<call_record> calls() const;
  /// Zeroes the counters (and the call log and upload records).
  void reset_counters();
  /// Counters, faults, rate-limit state, listing cursors, and the image store back to the
  /// seeded set.
  void reset();

  struct state;  // implementation detail, shared with the connection coroutines

 private:
  std::shared_ptr<state> state_;
};

}  // namespace imagegate::testing
