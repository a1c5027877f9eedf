// The emulator: deterministic image store, request handling (routing, auth, rate limit,
// faults) as synchronous code under one mutex, and the connection coroutines around it.
#include "tests/emulator/emulator.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <ctime>
#include <functional>
#include <mutex>
#include <set>

namespace imagegate::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace ondemand = simdjson::ondemand;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using request_t = http::request<http::string_body>;
using response_t = http::response<http::string_body>;
using clock_type = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------------------
// Deterministic generation

std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(std::string_view s, std::uint64_t basis = 0xcbf29ce484222325ULL) {
  std::uint64_t h = basis;
  for (unsigned char c : s) {
    h = (h ^ c) * 0x100000001b3ULL;
  }
  return h;
}

constexpr char hex_digits[] = "0123456789abcdef";

std::string to_hex(std::uint64_t v, int digits) {
  std::string out(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) {
    out[static_cast<std::size_t>(i)] = hex_digits[v & 0xf];
  }
  return out;
}

// Version-4-looking UUID (real generated ids look like this; nothing parses them as UUIDs).
std::string make_uuid(std::uint64_t& rng) {
  std::string h = to_hex(splitmix64(rng), 16) + to_hex(splitmix64(rng), 16);
  h[12] = '4';
  h[16] = hex_digits[8 + (h[16] % 4)];
  return h.substr(0, 8) + '-' + h.substr(8, 4) + '-' + h.substr(12, 4) + '-' + h.substr(16, 4) +
         '-' + h.substr(20, 12);
}

// The 22-character account hash that appears in imagedelivery.net URLs.
std::string delivery_hash(std::string_view account, std::uint64_t seed) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  std::uint64_t rng = fnv1a(account) ^ seed;
  std::string out;
  for (int i = 0; i < 22; ++i) {
    out += alphabet[splitmix64(rng) % 64];
  }
  return out;
}

// Two decimal digits of v (0..99).
void append2(std::string& out, int v) {
  out += static_cast<char>('0' + v / 10);
  out += static_cast<char>('0' + v % 10);
}

std::string iso8601(std::int64_t epoch_ms) {
  std::time_t secs = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  // %Y-%m-%dT%H:%M:%S.mmmZ by hand: strftime and snprintf were a visible share of the
  // emulator's cost per request in the all-miss benchmark, where it is the shared upstream.
  std::string out;
  out.reserve(24);
  int year = tm.tm_year + 1900;
  append2(out, year / 100);
  append2(out, year % 100);
  out += '-';
  append2(out, tm.tm_mon + 1);
  out += '-';
  append2(out, tm.tm_mday);
  out += 'T';
  append2(out, tm.tm_hour);
  out += ':';
  append2(out, tm.tm_min);
  out += ':';
  append2(out, tm.tm_sec);
  out += '.';
  int ms = static_cast<int>(epoch_ms % 1000);
  out += static_cast<char>('0' + ms / 100);
  append2(out, ms % 100);
  out += 'Z';
  return out;
}

// RFC 9110 §5.6.7 IMF-fixdate. Each thread keeps the last two seconds it formatted (every
// API response carries a Date and cookie expiries an hour later).
std::string http_date(std::chrono::system_clock::time_point tp) {
  struct slot {
    std::time_t second = -1;
    std::string text;
  };
  thread_local std::array<slot, 2> cache;
  thread_local std::size_t next = 0;
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  for (const auto& s : cache) {
    if (s.second == t) {
      return s.text;
    }
  }
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  slot& s = cache[next];
  next = (next + 1) % cache.size();
  s.second = t;
  s.text = buf;
  return s.text;
}

// Appends s as a JSON string literal; runs of bytes that need no escape are copied whole.
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') {
      continue;
    }
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += hex_digits[c >> 4];
        out += hex_digits[c & 0xf];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s);
  return out;
}

struct image {
  std::string id;
  std::string filename;
  std::string uploaded;
  std::string meta_json = "{}";  // a JSON object, stored as text
  std::optional<std::string> creator;
  bool require_signed_urls = false;
  bool draft = false;
};

image generate_image(std::string_view id, std::uint64_t seed) {
  static constexpr std::string_view names[] = {"logo", "hero-banner", "avatar", "product-shot",
                                               "team-photo", "diagram"};
  static constexpr std::string_view exts[] = {"png", "jpg", "webp", "jpeg", "gif"};
  static constexpr std::string_view teams[] = {"marketing", "support", "catalog", "design"};
  std::uint64_t rng = fnv1a(id) ^ seed;
  image img;
  img.id = std::string(id);
  img.filename = std::string(names[splitmix64(rng) % 6]) + '-' +
                 std::to_string(splitmix64(rng) % 10000) + '.' +
                 std::string(exts[splitmix64(rng) % 5]);
  // 2021-01-01T00:00:00Z plus up to three years.
  img.uploaded = iso8601(1609459200000LL +
                         static_cast<std::int64_t>(splitmix64(rng) % (3ULL * 365 * 86400000)));
  img.meta_json = R"({"team":")" + std::string(teams[splitmix64(rng) % 4]) +
                  R"(","source":"emulator","revision":)" + std::to_string(splitmix64(rng) % 50) +
                  "}";
  if (splitmix64(rng) % 3 != 0) {
    img.creator = "user-" + to_hex(splitmix64(rng), 8);
  }
  img.require_signed_urls = splitmix64(rng) % 4 == 0;
  img.draft = id.starts_with("draft-");
  return img;
}

// How a fault bends an otherwise valid image rendering.
struct render_tweaks {
  bool wrong_id = false;
  bool wrong_types = false;
  std::size_t pad_to = 0;  // total envelope bytes at least
};

constexpr std::string_view variant_names[] = {"public", "thumbnail", "hero"};

// Appends the record as the API renders it (one string, reserved once: the all-miss
// benchmark renders one per request).
void append_image_json(std::string& j, const image& img, std::string_view hash,
                       const render_tweaks& tw = {}) {
  std::string_view id = img.id;
  if (tw.wrong_id) {
    id = img.id == "ffffffff-ffff-4fff-bfff-ffffffffffff" ? "00000000-0000-4000-8000-000000000000"
                                                          : "ffffffff-ffff-4fff-bfff-ffffffffffff";
  }
  j.reserve(j.size() + 320 + 4 * img.id.size() + 3 * hash.size() + img.filename.size() +
            img.meta_json.size());
  j += R"({"id":)";
  append_json_string(j, id);
  j += R"(,"filename":)";
  append_json_string(j, img.filename);
  if (tw.wrong_types) {
    j += R"(,"uploaded":1651234567,"requireSignedURLs":"yes","variants":"public")";
  } else {
    j += R"(,"uploaded":)";
    append_json_string(j, img.uploaded);
    j += R"(,"requireSignedURLs":)";
    j += img.require_signed_urls ? "true" : "false";
    j += R"(,"variants":[)";
    std::string url;
    bool first = true;
    for (auto v : variant_names) {
      // The id goes into the URL as it appears in API paths (the SDK percent-encodes it).
      url.assign("https://imagedelivery.net/").append(hash).append(1, '/').append(img.id);
      url.append(1, '/').append(v);
      j += first ? "" : ",";
      append_json_string(j, url);
      first = false;
    }
    j += ']';
  }
  j += R"(,"meta":)";
  j += img.meta_json;
  j += R"(,"creator":)";
  if (img.creator) {
    append_json_string(j, *img.creator);
  } else {
    j += "null";
  }
  if (img.draft) {
    j += R"(,"draft":true)";
  }
  j += '}';
}

constexpr std::string_view envelope_tail = R"(,"success":true,"errors":[],"messages":[]})";

std::string ok_envelope(std::string_view result) {
  return std::string(R"({"result":)") + std::string(result) + std::string(envelope_tail);
}

std::string error_envelope(int code, std::string_view message, std::string_view chain = {}) {
  std::string e = R"({"result":null,"success":false,"errors":[{"code":)" + std::to_string(code) +
                  R"(,"message":)" + json_escape(message);
  if (!chain.empty()) {
    e += R"(,"error_chain":)";
    e += chain;
  }
  return e + R"(}],"messages":[]})";
}

std::string image_envelope(const image& img, std::string_view hash, const render_tweaks& tw) {
  std::string body(R"({"result":)");
  append_image_json(body, img, hash, tw);
  body += envelope_tail;
  return body;
}

// Pads meta with a filler string so the whole envelope reaches `pad_to` bytes.
std::string padded_image_envelope(const image& img, std::string_view hash,
                                  const render_tweaks& tw) {
  std::string body = image_envelope(img, hash, tw);
  constexpr std::string_view filler_key = R"(,"padding":"")";
  if (tw.pad_to > body.size() + filler_key.size()) {
    std::size_t n = tw.pad_to - body.size() - filler_key.size();
    image padded = img;
    padded.meta_json.pop_back();  // the closing brace
    if (padded.meta_json.size() > 1) {
      padded.meta_json += ',';
    }
    padded.meta_json += R"("padding":")" + std::string(n, 'x') + R"("})";
    body = image_envelope(padded, hash, tw);
  }
  return body;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      return std::nullopt;
    }
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc{} || p != s.data() + i + 3) {
      return std::nullopt;
    }
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  for (;;) {
    auto pos = s.find(sep);
    parts.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) {
      return parts;
    }
    s.remove_prefix(pos + 1);
  }
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  for (auto kv : split(query, '&')) {
    auto eq = kv.find('=');
    if (kv.substr(0, eq) == name) {
      return percent_decode(eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1));
    }
  }
  return std::nullopt;
}

// simdjson 3.0.1's document has no public at_end(); current_location() reports
// OUT_OF_BOUNDS exactly when the whole input was consumed.
bool at_end(ondemand::document& doc) {
  return doc.current_location().error() == simdjson::OUT_OF_BOUNDS;
}

template <class T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

std::uint64_t ceil_seconds(clock_type::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms <= 0 ? 0 : static_cast<std::uint64_t>((ms + 999) / 1000);
}

// Fixed-window limiter per token, with the upstream's "over the limit blocks everything for
// block_duration" rule. Not thread-safe: used under state::mu_.
struct rate_limiter {
  struct bucket {
    clock_type::time_point window_start;
    std::uint64_t used = 0;
    clock_type::time_point blocked_until{};
  };
  struct verdict {
    bool limited = false;
    bool tripped_now = false;  // this request is the one that exceeded the limit
    std::uint64_t remaining = 0;
    std::uint64_t reset_seconds = 0;  // also Retry-After when limited
  };

  verdict consume(const std::string& key, clock_type::time_point now, const emulator_options& o) {
    auto [it, fresh] = buckets.try_emplace(key);
    bucket& b = it->second;
    if (fresh) {
      b.window_start = now;
    }
    if (b.blocked_until != clock_type::time_point{}) {
      if (now < b.blocked_until) {
        return {true, false, 0, std::max<std::uint64_t>(1, ceil_seconds(b.blocked_until - now))};
      }
      b = bucket{now, 0, {}};
    }
    if (now >= b.window_start + o.rate_window) {
      b.window_start = now;
      b.used = 0;
    }
    ++b.used;
    if (b.used > o.rate_limit) {
      b.blocked_until = now + o.block_duration;
      return {true, true, 0, std::max<std::uint64_t>(1, ceil_seconds(o.block_duration))};
    }
    return {false, false, o.rate_limit - b.used,
            ceil_seconds(b.window_start + o.rate_window - now)};
  }

  std::map<std::string, bucket> buckets;
};

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

std::string_view status_message(unsigned status) {
  return status == 503 ? "Service unavailable" : "Internal server error";
}

// Cap on distinct ids in the per-image counter, so a flood with any_image_exists cannot grow
// the map without bound.
constexpr std::size_t max_counted_ids = 100000;

}  // namespace

std::string_view to_string(fault_kind k) noexcept {
  switch (k) {
    case fault_kind::delay: return "delay";
    case fault_kind::status: return "status";
    case fault_kind::rate_limited: return "rate_limited";
    case fault_kind::reset: return "reset";
    case fault_kind::truncated: return "truncated";
    case fault_kind::invalid_json: return "invalid_json";
    case fault_kind::wrong_id: return "wrong_id";
    case fault_kind::wrong_types: return "wrong_types";
    case fault_kind::chunked: return "chunked";
    case fault_kind::oversized: return "oversized";
    case fault_kind::close: return "close";
    case fault_kind::hang: return "hang";
  }
  return "?";
}

std::optional<fault_kind> parse_fault_kind(std::string_view s) noexcept {
  for (int i = 0; i <= static_cast<int>(fault_kind::hang); ++i) {
    auto k = static_cast<fault_kind>(i);
    if (to_string(k) == s) {
      return k;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------
// Shared state. The connection coroutines hold it by shared_ptr so the emulator object may
// go away before the io_context has finished them.

struct emulator::state {
  state(asio::any_io_executor exec, emulator_options o)
      : ex(std::move(exec)),
        opts(std::move(o)),
        log(opts.log ? opts.log : spdlog::default_logger()),
        ssl_ctx(ssl::context::tls_server),
        acceptor(asio::make_strand(ex)) {
    if (opts.tls) {
      if (opts.certs.empty()) {
        opts.certs = make_test_pki();
      }
      ssl_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
      ssl_ctx.use_certificate_chain(asio::buffer(opts.certs.server_cert_pem));
      ssl_ctx.use_private_key(asio::buffer(opts.certs.server_key_pem), ssl::context::pem);
    }
    seed_store();
  }

  void seed_store() {
    accounts.clear();
    for (const auto& a : opts.accounts) {
      account_store& st = accounts[a];
      st.hash = delivery_hash(a, opts.seed);
      std::uint64_t rng = fnv1a(a) ^ opts.seed;
      for (std::size_t i = 0; i < opts.image_count; ++i) {
        std::string id = make_uuid(rng);
        st.images.emplace(id, generate_image(id, opts.seed));
      }
    }
  }

  void count_status(unsigned s) {
    std::lock_guard lk(mu);
    ++by_status[s];
  }

  // Counts the Bearer token or X-Auth-Key a request presented (tests assert which
  // credential the gateway sent upstream).
  void count_secret(const request_t& req) {
    std::string secret;
    if (auto it = req.find(http::field::authorization); it != req.end()) {
      std::string_view v = it->value();
      secret = std::string(v.substr(std::min<std::size_t>(v.size(), 7)));
    } else if (auto k = req.find("X-Auth-Key"); k != req.end()) {
      secret = std::string(k->value());
    }
    if (secret.empty()) {
      return;
    }
    std::lock_guard lk(mu);
    auto it = by_secret.find(secret);
    if (it != by_secret.end()) {
      ++it->second;
    } else if (by_secret.size() < 1000) {
      by_secret.emplace(std::move(secret), 1);
    }
  }

  void count_image(const std::string& id) {
    std::lock_guard lk(mu);
    auto it = by_image.find(id);
    if (it != by_image.end()) {
      ++it->second;
    } else if (by_image.size() < max_counted_ids) {
      by_image.emplace(id, 1);
    }
  }

  std::optional<fault_rule> take_fault(const std::string* id) {
    std::lock_guard lk(mu);
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if (!it->image_id.empty() && (id == nullptr || *id != it->image_id)) {
        continue;
      }
      fault_rule r = *it;
      if (it->times && --*it->times == 0) {
        faults.erase(it);
      }
      return r;
    }
    return std::nullopt;
  }

  // Every API response carries these, as the real one does. `res` has none of them yet.
  void api_headers(response_t& res, const rate_limiter::verdict& v) {
    std::uint64_t n = ++response_serial;
    std::uint64_t rng = n ^ opts.seed;
    res.insert(http::field::content_type, "application/json");
    res.insert(http::field::cache_control,
               "no-store, no-cache, must-revalidate, post-check=0, pre-check=0");
    res.insert(http::field::expires, "Sun, 25 Jan 1981 05:00:00 GMT");
    res.insert(http::field::date, http_date(std::chrono::system_clock::now()));
    res.insert(http::field::server, "cloudflare");
    res.insert("cf-ray", to_hex(splitmix64(rng), 16) + "-SJC");
    res.insert("Ratelimit", "\"default\";r=" + std::to_string(v.remaining) +
                                ";t=" + std::to_string(v.reset_seconds));
    res.insert("Ratelimit-Policy", "\"burst\";q=" + std::to_string(opts.rate_limit) +
                                       ";w=" + std::to_string(ceil_seconds(opts.rate_window)));
    const std::string expiry = http_date(std::chrono::system_clock::now() + std::chrono::hours(1));
    res.insert(http::field::set_cookie, "__cflb=0H28v" + to_hex(splitmix64(rng), 16) +
                                            "; SameSite=Lax; path=/; expires=" + expiry +
                                            "; HttpOnly");
    res.insert(http::field::set_cookie, "__cf_bm=" + to_hex(splitmix64(rng), 16) +
                                            to_hex(splitmix64(rng), 16) +
                                            "; path=/; expires=" + expiry +
                                            "; domain=.api.cloudflare.com; HttpOnly; Secure; "
                                            "SameSite=None");
    res.insert(http::field::set_cookie, "__cfruid=" + to_hex(splitmix64(rng), 16) +
                                            "-1700000000; path=/; domain=.api.cloudflare.com; "
                                            "HttpOnly; Secure; SameSite=None");
    res.insert(http::field::set_cookie, "_cfuvid=" + to_hex(splitmix64(rng), 16) +
                                            "-1700000000000-0.0.1.1-604800000; path=/; "
                                            "domain=.api.cloudflare.com; HttpOnly; Secure; "
                                            "SameSite=None");
  }

  static response_t make_response(unsigned status, std::string body) {
    response_t res{static_cast<http::status>(status), 11};
    res.body() = std::move(body);
    return res;
  }

  void reset_counters() {
    requests = 0;
    tripped = 0;
    faults_applied = 0;
    connections = 0;
    std::lock_guard lk(mu);
    by_status.clear();
    by_image.clear();
    by_secret.clear();
  }

  void reset_all() {
    reset_counters();
    std::lock_guard lk(mu);
    faults.clear();
    limiter.buckets.clear();
    seed_store();
  }

  outcome handle(const request_t& req);
  outcome handle_control(const request_t& req);
  outcome handle_api(const request_t& req);
  response_t route(const request_t& req, std::string_view path, std::string_view query,
                   const std::string* image_id, const render_tweaks& tw);
  response_t list_images(const std::string& account, std::string_view query);
  response_t patch_image(account_store& acc, const std::string& id, const request_t& req,
                         const render_tweaks& tw);
  image* find_image(account_store& acc, const std::string& id);
  const image* peek_image(account_store& acc, const std::string& id, image& scratch);
  std::string stats_json();
  std::optional<std::string> parse_fault_json(const std::string& body, fault_rule& out);

  asio::any_io_executor ex;
  emulator_options opts;
  std::shared_ptr<spdlog::logger> log;
  ssl::context ssl_ctx;
  tcp::acceptor acceptor;  // on its own strand; touched there after start()
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> stopping{false};

  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> tripped{0};
  std::atomic<std::uint64_t> faults_applied{0};
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> session_errors{0};
  std::atomic<std::uint64_t> response_serial{0};

  mutable std::mutex mu;  // guards everything below; never held across a co_await
  std::map<unsigned, std::uint64_t> by_status;
  std::map<std::string, std::uint64_t, std::less<>> by_image;
  std::map<std::string, std::uint64_t, std::less<>> by_secret;  // see count_secret
  std::vector<fault_rule> faults;
  rate_limiter limiter;
  std::map<std::string, account_store, std::less<>> accounts;
  std::uint64_t next_connection_id = 0;
  // Per live connection: posts a "stop" to the connection's strand.
  std::map<std::uint64_t, std::function<void()>> live;
};

// ---------------------------------------------------------------------------------------
// Request handling (synchronous; locks state::mu briefly)

outcome emulator::state::handle(const request_t& req) {
  if (req.target().starts_with("/__emulator/")) {
    return handle_control(req);
  }
  outcome o = handle_api(req);
  o.close = o.close || !req.keep_alive();
  if (o.act != action::reset && o.act != action::hang) {
    count_status(o.res.result_int());
  }
  return o;
}

outcome emulator::state::handle_api(const request_t& req) {
  ++requests;
  std::string_view target = req.target();
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query = qpos == std::string_view::npos ? "" : target.substr(qpos + 1);

  // /client/v4/accounts/{a}/images/v1/{id}: the id is the 8th segment (index 7).
  std::optional<std::string> image_id;
  auto segs = split(path, '/');
  if (segs.size() == 8 && segs[1] == "client" && segs[2] == "v4" && segs[3] == "accounts" &&
      segs[5] == "images" && segs[6] == "v1" && !segs[7].empty()) {
    image_id = percent_decode(segs[7]);
    if (image_id) {
      count_image(*image_id);
    }
  }

  const auto now = clock_type::now();
  std::string key(req[http::field::authorization]);
  if (key.empty() && req.count("X-Auth-Key") != 0) {
    key = "key:" + std::string(req["X-Auth-Email"]) + "\n" + std::string(req["X-Auth-Key"]);
  }
  count_secret(req);
  rate_limiter::verdict rl;
  {
    std::lock_guard lk(mu);
    rl = limiter.consume(key, now, opts);
  }

  outcome o;
  render_tweaks tw;
  auto fault = take_fault(image_id ? &*image_id : nullptr);
  if (fault) {
    ++faults_applied;
    o.delay = fault->delay;
    switch (fault->kind) {
      case fault_kind::reset: o.act = action::reset; return o;
      case fault_kind::hang: o.act = action::hang; return o;
      case fault_kind::status: {
        unsigned s = fault->status;
        // 401/403: the upstream refusing a credential it accepted before (revoked token).
        o.res = s == 401 || s == 403
                    ? make_response(s, error_envelope(10000, "Authentication error"))
                    : make_response(s, error_envelope(s == 503 ? 5503 : 5500, status_message(s)));
        api_headers(o.res, rl);
        return o;
      }
      case fault_kind::rate_limited:
        o.res = make_response(429, error_envelope(971, "Please wait and consider throttling "
                                                       "your request speed"));
        api_headers(o.res, {true, false, 0, fault->retry_after});
        o.res.set(http::field::retry_after, std::to_string(fault->retry_after));
        return o;
      case fault_kind::wrong_id: tw.wrong_id = true; break;
      case fault_kind::wrong_types: tw.wrong_types = true; break;
      case fault_kind::oversized: tw.pad_to = fault->size; break;
      case fault_kind::truncated: o.act = action::truncated; break;
      case fault_kind::chunked: o.act = action::chunked; break;
      case fault_kind::close: o.close = true; break;
      case fault_kind::delay:
      case fault_kind::invalid_json: break;
    }
  }

  if (rl.limited) {
    ++tripped;
    o.res = make_response(
        429, error_envelope(971, "Please wait and consider throttling your request speed"));
    api_headers(o.res, rl);
    o.res.set(http::field::retry_after, std::to_string(rl.reset_seconds));
  } else {
    o.res = route(req, path, query, image_id ? &*image_id : nullptr, tw);
    api_headers(o.res, rl);
  }
  if (fault && fault->kind == fault_kind::invalid_json) {
    auto& b = o.res.body();
    b.resize(b.size() / 2);
    b += "\x01}]";
  }
  return o;
}

response_t emulator::state::route(const request_t& req, std::string_view path,
                                  std::string_view query, const std::string* image_id,
                                  const render_tweaks& tw) {
  // Authentication first, as the real API: RFC 6750 §2.1 "Bearer" credentials, or the
  // legacy X-Auth-Email + X-Auth-Key pair.
  auto auth_it = req.find(http::field::authorization);
  auto email_it = req.find("X-Auth-Email");
  auto key_it = req.find("X-Auth-Key");
  const bool key_pair = email_it != req.end() && key_it != req.end();
  if (auth_it == req.end() && !key_pair) {
    return make_response(400, error_envelope(9106, "Missing X-Auth-Key, X-Auth-Email or "
                                                   "Authorization headers"));
  }
  // Which configured credential this is: null for the default token (every account).
  const emulator_credential* who = nullptr;
  bool known = false;
  if (auth_it != req.end()) {
    std::string_view auth = auth_it->value();
    constexpr std::string_view scheme = "bearer ";
    bool well_formed =
        auth.size() > scheme.size() &&
        std::equal(scheme.begin(), scheme.end(), auth.begin(),
                   [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); }) &&
        auth.substr(scheme.size()).find_first_of(" \t,") == std::string_view::npos;
    if (!well_formed) {
      return make_response(400, error_envelope(6003, "Invalid request headers",
                                               R"([{"code":6111,"message":"Invalid format for )"
                                               R"(Authorization header"}])"));
    }
    const std::string_view token = auth.substr(scheme.size());
    known = token == opts.token;
    for (const auto& c : opts.credentials) {
      if (!known && !c.token.empty() && c.token == token) {
        who = &c;
        known = true;
      }
    }
  } else {
    for (const auto& c : opts.credentials) {
      if (!known && c.token.empty() && c.email == email_it->value() &&
          c.key == key_it->value()) {
        who = &c;
        known = true;
      }
    }
  }
  if (!known) {
    return make_response(opts.unknown_credential_status,
                         error_envelope(10000, "Authentication error"));
  }

  auto segs = split(path, '/');
  auto no_route = [] { return make_response(404, error_envelope(7000, "No route for that URI")); };
  if (segs.size() < 5 || segs[0] != "" || segs[1] != "client" || segs[2] != "v4" ||
      segs[3] != "accounts") {
    return no_route();
  }
  std::string account(segs[4]);
  if (who != nullptr && !who->accounts.empty() &&
      std::find(who->accounts.begin(), who->accounts.end(), account) == who->accounts.end()) {
    // A valid credential without access to this account.
    return make_response(403, error_envelope(10000, "Authentication error"));
  }
  std::lock_guard lk(mu);
  auto acc_it = accounts.find(account);
  if (acc_it == accounts.end()) {
    return make_response(404, error_envelope(7003, "Could not route to " +
                                                        std::string(path.substr(10)) +
                                                        ", perhaps your object identifier is "
                                                        "invalid?"));
  }
  account_store& acc = acc_it->second;
  if (segs.size() == 7 && segs[5] == "images" && segs[6] == "v2") {
    if (req.method() != http::verb::get) {
      return make_response(405, error_envelope(7001, "Method not allowed"));
    }
    return list_images(account, query);
  }
  if (segs.size() != 8 || segs[5] != "images" || segs[6] != "v1" || segs[7].empty()) {
    return no_route();
  }
  if (image_id == nullptr) {
    return make_response(400, error_envelope(5400, "Bad request: malformed image id"));
  }
  // Siblings that share the prefix but are not image details.
  if (*image_id == "keys" || *image_id == "stats" || *image_id == "variants") {
    return no_route();
  }
  switch (req.method()) {
    case http::verb::get: {
      image generated;
      const image* img = peek_image(acc, *image_id, generated);
      if (img == nullptr) {
        return make_response(404, error_envelope(5404, "Image not found"));
      }
      return make_response(200, padded_image_envelope(*img, acc.hash, tw));
    }
    case http::verb::patch:
      return patch_image(acc, *image_id, req, tw);
    case http::verb::delete_:
      if (find_image(acc, *image_id) == nullptr) {
        return make_response(404, error_envelope(5404, "Image not found"));
      }
      acc.images.erase(*image_id);
      acc.deleted.insert(*image_id);
      return make_response(200, ok_envelope("{}"));
    default:
      return make_response(405, error_envelope(7001, "Method not allowed"));
  }
}

// Requires mu held. With any_image_exists, an id never stored is rendered from a record
// generated into `scratch` and not kept, so an all-miss load costs the same per request
// from the first to the ten-millionth id and the emulator's memory stays flat.
const image* emulator::state::peek_image(account_store& acc, const std::string& id,
                                         image& scratch) {
  auto it = acc.images.find(id);
  if (it != acc.images.end()) {
    return &it->second;
  }
  if (!opts.any_image_exists || acc.deleted.contains(id)) {
    return nullptr;
  }
  scratch = generate_image(id, opts.seed);
  return &scratch;
}

// Requires mu held. Like peek_image, but a generated record is stored (PATCH, DELETE).
image* emulator::state::find_image(account_store& acc, const std::string& id) {
  auto it = acc.images.find(id);
  if (it != acc.images.end()) {
    return &it->second;
  }
  if (!opts.any_image_exists || acc.deleted.contains(id)) {
    return nullptr;
  }
  return &acc.images.emplace(id, generate_image(id, opts.seed)).first->second;
}

response_t emulator::state::patch_image(account_store& acc, const std::string& id,
                                        const request_t& req, const render_tweaks& tw) {
  image* img = find_image(acc, id);
  if (img == nullptr) {
    return make_response(404, error_envelope(5404, "Image not found"));
  }
  auto bad = [](std::string_view why) {
    return make_response(400, error_envelope(5400, "Bad request: " + std::string(why)));
  };
  image updated = *img;
  simdjson::padded_string body(req.body());
  ondemand::parser parser;
  ondemand::document doc;
  ondemand::object obj;
  if (parser.iterate(body).get(doc) || doc.get_object().get(obj)) {
    return bad("body must be a JSON object");
  }
  for (auto field_result : obj) {
    ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      return bad("malformed JSON");
    }
    ondemand::value v = field.value();
    ondemand::json_type type;
    if (v.type().get(type)) {
      return bad("malformed JSON");
    }
    if (key == "creator") {
      std::string_view s;
      if (type == ondemand::json_type::null) {
        updated.creator.reset();
      } else if (type == ondemand::json_type::string && !v.get_string().get(s) &&
                 s.size() <= 1024) {
        updated.creator = std::string(s);
      } else {
        return bad("creator must be a string of at most 1024 bytes or null");
      }
    } else if (key == "metadata") {
      ondemand::object meta;
      std::string_view raw;
      if (type != ondemand::json_type::object || v.get_object().get(meta) ||
          meta.raw_json().get(raw) || raw.size() > 1024) {
        return bad("metadata must be an object of at most 1024 bytes");
      }
      updated.meta_json = std::string(raw);
    } else if (key == "requireSignedURLs") {
      bool b = false;
      if (type != ondemand::json_type::boolean || v.get_bool().get(b)) {
        return bad("requireSignedURLs must be a boolean");
      }
      updated.require_signed_urls = b;
    } else {
      return bad("unknown field");
    }
  }
  if (!at_end(doc)) {
    return bad("trailing content");
  }
  *img = std::move(updated);
  return make_response(200, padded_image_envelope(*img, acc.hash, tw));
}

// Requires mu held. Pages are in id order; the continuation token is the hex of the last id.
response_t emulator::state::list_images(const std::string& account, std::string_view query) {
  auto bad = [](std::string_view why) {
    return make_response(400, error_envelope(5400, "Bad request: " + std::string(why)));
  };
  std::size_t per_page = 1000;
  if (auto p = query_param(query, "per_page")) {
    auto n = parse_number<std::size_t>(*p);
    if (!n || *n < 10 || *n > 10000) {
      return bad("per_page must be between 10 and 10000");
    }
    per_page = *n;
  }
  bool desc = false;
  if (auto s = query_param(query, "sort_order")) {
    if (*s != "asc" && *s != "desc") {
      return bad("sort_order must be asc or desc");
    }
    desc = *s == "desc";
  }
  std::optional<std::string> after;
  if (auto t = query_param(query, "continuation_token"); t && !t->empty()) {
    if (t->size() % 2 != 0) {
      return bad("invalid continuation_token");
    }
    std::string id;
    for (std::size_t i = 0; i < t->size(); i += 2) {
      unsigned v = 0;
      auto [p, ec] = std::from_chars(t->data() + i, t->data() + i + 2, v, 16);
      if (ec != std::errc{} || p != t->data() + i + 2) {
        return bad("invalid continuation_token");
      }
      id += static_cast<char>(v);
    }
    after = std::move(id);
  }
  const account_store& acc = accounts.at(account);
  std::vector<const image*> page;
  if (!desc) {
    auto it = after ? acc.images.upper_bound(*after) : acc.images.begin();
    for (; it != acc.images.end() && page.size() < per_page; ++it) {
      page.push_back(&it->second);
    }
  } else {
    auto it = after ? acc.images.lower_bound(*after) : acc.images.end();
    while (it != acc.images.begin() && page.size() < per_page) {
      --it;
      page.push_back(&it->second);
    }
  }
  bool more = false;
  if (!page.empty()) {
    const std::string& last = page.back()->id;
    more = desc ? acc.images.begin()->first != last : acc.images.rbegin()->first != last;
  }
  std::string r = R"({"images":[)";
  for (std::size_t i = 0; i < page.size(); ++i) {
    r += i ? "," : "";
    append_image_json(r, *page[i], acc.hash);
  }
  r += R"(],"continuation_token":)";
  if (more && page.size() == per_page) {
    std::string token;
    for (unsigned char c : page.back()->id) {
      token += hex_digits[c >> 4];
      token += hex_digits[c & 0xf];
    }
    r += json_escape(token);
  } else {
    r += "null";
  }
  r += '}';
  return make_response(200, ok_envelope(r));
}

// Control endpoints: no token, no faults, not counted.
outcome emulator::state::handle_control(const request_t& req) {
  outcome o;
  auto reply = [&o](unsigned status, std::string body) {
    o.res = make_response(status, std::move(body));
    o.res.set(http::field::content_type, "application/json");
    o.res.set(http::field::cache_control, "no-store");
  };
  std::string_view t = req.target();
  t = t.substr(0, t.find('?'));
  if (t == "/__emulator/faults" && req.method() == http::verb::post) {
    fault_rule rule;
    if (auto err = parse_fault_json(req.body(), rule)) {
      reply(400, R"({"ok":false,"error":)" + json_escape(*err) + "}");
    } else {
      std::size_t n = 0;
      if (!rule.times || *rule.times > 0) {
        std::lock_guard lk(mu);
        faults.push_back(std::move(rule));
        n = faults.size();
      }
      reply(200, R"({"ok":true,"rules":)" + std::to_string(n) + "}");
    }
  } else if (t == "/__emulator/faults" && req.method() == http::verb::delete_) {
    std::lock_guard lk(mu);
    faults.clear();
    reply(200, R"({"ok":true})");
  } else if (t == "/__emulator/stats" && req.method() == http::verb::get) {
    reply(200, stats_json());
  } else if (t == "/__emulator/reset" && req.method() == http::verb::post) {
    reset_all();
    reply(200, R"({"ok":true})");
  } else {
    reply(404, R"({"ok":false,"error":"unknown control endpoint"})");
  }
  o.close = o.close || !req.keep_alive();
  return o;
}

std::optional<std::string> emulator::state::parse_fault_json(const std::string& text,
                                                              fault_rule& out) {
  simdjson::padded_string body(text);
  ondemand::parser parser;
  ondemand::document doc;
  ondemand::object obj;
  if (parser.iterate(body).get(doc) || doc.get_object().get(obj)) {
    return "body must be a JSON object";
  }
  bool has_kind = false;
  for (auto field_result : obj) {
    ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      return "malformed JSON";
    }
    ondemand::value v = field.value();
    std::string_view s;
    std::uint64_t n = 0;
    if (key == "kind") {
      if (v.get_string().get(s)) {
        return "kind must be a string";
      }
      auto k = parse_fault_kind(s);
      if (!k) {
        return "unknown kind";
      }
      out.kind = *k;
      has_kind = true;
    } else if (key == "image_id") {
      if (v.get_string().get(s)) {
        return "image_id must be a string";
      }
      out.image_id = std::string(s);
    } else if (key == "times" || key == "delay_ms" || key == "status" || key == "retry_after" ||
               key == "size") {
      if (v.get_uint64().get(n)) {
        return std::string(key) + " must be a non-negative integer";
      }
      if (key == "times") {
        out.times = n;
      } else if (key == "delay_ms") {
        out.delay = std::chrono::milliseconds(n);
      } else if (key == "status") {
        if ((n < 500 || n > 599) && n != 401 && n != 403) {
          return "status must be 5xx, 401 or 403";
        }
        out.status = static_cast<unsigned>(n);
      } else if (key == "retry_after") {
        out.retry_after = n;
      } else {
        out.size = static_cast<std::size_t>(n);
      }
    } else {
      return "unknown field " + std::string(key);
    }
  }
  if (!at_end(doc)) {
    return "trailing content";
  }
  if (!has_kind) {
    return "kind is required";
  }
  return std::nullopt;
}

std::string emulator::state::stats_json() {
  std::string j = R"({"requests":)" + std::to_string(requests.load()) + R"(,"tripped":)" +
                  std::to_string(tripped.load()) + R"(,"faults_applied":)" +
                  std::to_string(faults_applied.load()) + R"(,"connections_accepted":)" +
                  std::to_string(connections.load()) + R"(,"by_status":{)";
  std::lock_guard lk(mu);
  bool first = true;
  for (auto [s, n] : by_status) {
    j += first ? "" : ",";
    j += '"' + std::to_string(s) + "\":" + std::to_string(n);
    first = false;
  }
  j += R"(},"by_image":{)";
  first = true;
  std::size_t listed = 0;
  for (const auto& [id, n] : by_image) {
    if (++listed > 1000) {
      break;
    }
    j += first ? "" : ",";
    j += json_escape(id) + ':' + std::to_string(n);
    first = false;
  }
  return j + "}}";
}

// ---------------------------------------------------------------------------------------
// Connections

namespace {

using state_ptr = std::shared_ptr<emulator::state>;
using tls_stream = ssl::stream<beast::tcp_stream>;

// Per-connection data shared between the connection coroutine and stop(); touched only on
// the connection's strand.
template <class Stream>
struct connection {
  template <class... Args>
  explicit connection(Args&&... args) : stream(std::forward<Args>(args)...),
                                        timer(stream.get_executor()) {}

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
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(st->opts.header_limit));
    parser.body_limit(st->opts.body_limit);
    lowest.expires_after(st->opts.idle_timeout);
    auto [ec, n] = co_await http::async_read(c->stream, buffer, parser, use_nothrow);
    if (ec == http::error::end_of_stream) {
      break;
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_version).category() &&
        ec != http::error::partial_message) {
      // A parse error: answer it, as a server should (RFC 9112 §2.2), then close.
      unsigned s = ec == http::error::body_limit     ? 413
                   : ec == http::error::header_limit ? 431
                                                     : 400;
      response_t res{static_cast<http::status>(s), 11};
      res.set(http::field::content_type, "application/json");
      res.body() = error_envelope(s == 400 ? 5400 : 5413, "Bad request");
      res.keep_alive(false);
      res.prepare_payload();
      lowest.expires_after(st->opts.idle_timeout);
      auto [wec, wn] = co_await http::async_write(c->stream, res, use_nothrow);
      (void)wec;
      break;
    }
    if (ec) {
      co_return;  // timeout, reset, truncated TLS, stop(): nothing to answer
    }
    c->busy = true;
    outcome o = st->handle(parser.get());
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
      std::string body = std::move(o.res.body());
      head.content_length(body.size() + std::max<std::size_t>(body.size(), 1));
      body.resize(body.size() / 2);
      co_await write_raw(c, std::move(head), std::move(body));
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

asio::awaitable<void> run_connection(state_ptr st, tcp::socket socket) {
  if (st->opts.tls) {
    auto c = std::make_shared<connection<tls_stream>>(beast::tcp_stream(std::move(socket)),
                                                      st->ssl_ctx);
    co_await serve(st, std::move(c));
  } else {
    auto c = std::make_shared<connection<beast::tcp_stream>>(std::move(socket));
    co_await serve(st, std::move(c));
  }
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

asio::awaitable<void> accept_loop(state_ptr st) {
  for (;;) {
    tcp::socket socket = st->opts.single_threaded ? tcp::socket(st->ex)
                                                  : tcp::socket(asio::make_strand(st->ex));
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
    auto ex = socket.get_executor();
    asio::co_spawn(ex, run_connection(st, std::move(socket)), log_failure{st, "connection"});
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
  std::lock_guard lk(state_->mu);
  s.by_status = state_->by_status;
  s.by_image.insert(state_->by_image.begin(), state_->by_image.end());
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

void emulator::reset_counters() { state_->reset_counters(); }

void emulator::reset() { state_->reset_all(); }

}  // namespace imagegate::testing
