// The emulator's shared state: construction and seeding, counters, fault rules, the headers
// every API answer carries, and where a request body goes.
#include "tests/emulator/state.hpp"

#include <boost/asio/strand.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>

namespace imagegate::testing {

using namespace detail;
namespace ssl = asio::ssl;

namespace detail {

bool body_sink::consume(std::string_view piece) {
  bytes += piece.size();
  if (bytes > read_limit) {
    too_large = true;
    return false;
  }
  if (bytes > limit && !too_large) {
    too_large = true;
    form.reset();  // nothing of it will be used: stop parsing and free it
    text.clear();
    text.shrink_to_fit();
  }
  if (too_large) {
    return true;  // read and discard, so the answer can be a clean 413
  }
  if (!streamed) {
    text.append(piece);
    peak_held = std::max(peak_held, text.capacity());
    return true;
  }
  hash->update(piece);
  if (form) {
    form->feed(piece);
    peak_held = std::max(peak_held, form->held());
  }
  return true;
}

void body_sink::finish() {
  if (streamed && !too_large) {
    sha256_hex = hash->hex_digest();
    if (form) {
      form->finish();
    }
  }
}

}  // namespace detail

emulator::state::state(asio::any_io_executor exec, emulator_options o)
    : ex(std::move(exec)),
      opts(std::move(o)),
      log(opts.log ? opts.log : spdlog::default_logger()),
      ssl_ctx(ssl::context::tls_server),
      acceptor(asio::make_strand(ex)),
      limiter(limiter_settings{opts.rate_limit_mode, opts.rate_limit, opts.rate_window,
                               opts.block_duration}),
      calls(opts.call_log_capacity) {
  if (opts.tls) {
    if (opts.certs.empty()) {
      opts.certs = make_test_pki();
    }
    ssl_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ssl_ctx.use_certificate_chain(asio::buffer(opts.certs.server_cert_pem));
    ssl_ctx.use_private_key(asio::buffer(opts.certs.server_key_pem), ssl::context::pem);
  }
  seed_store();
}

void emulator::state::seed_store() {
  accounts.clear();
  for (const auto& a : opts.accounts) {
    account_store& st = accounts[a];
    st.hash = delivery_hash(a, opts.seed);
    std::uint64_t rng = fnv1a(a) ^ opts.seed;
    for (std::size_t i = 0; i < opts.image_count; ++i) {
      std::string id = make_uuid(rng);
      st.images.emplace(id, generate_image(id, opts.seed));
    }
    for (const auto& id : opts.custom_ids) {
      st.images.emplace(id, generate_image(id, opts.seed));
    }
  }
  upload_rng = fnv1a("uploads") ^ opts.seed;
}

void emulator::state::count_status(unsigned s) {
  std::lock_guard lk(mu);
  ++by_status[s];
}

// Counts the Bearer token or X-Auth-Key a request presented (tests assert which credential
// the gateway sent upstream).
void emulator::state::count_secret(const request_t& req) {
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

void emulator::state::count_image(const std::string& id) {
  std::lock_guard lk(mu);
  auto it = by_image.find(id);
  if (it != by_image.end()) {
    ++it->second;
  } else if (by_image.size() < max_counted_ids) {
    by_image.emplace(id, 1);
  }
}

std::optional<fault_rule> emulator::state::take_fault(const std::string* id) {
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

void emulator::state::api_headers(response_t& res, const limiter_verdict& v) {
  std::uint64_t n = ++response_serial;
  std::uint64_t rng = n ^ opts.seed;
  if (res.find(http::field::content_type) == res.end()) {
    res.insert(http::field::content_type, "application/json");
  }
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

response_t emulator::state::make_response(unsigned status, std::string body) {
  response_t res{static_cast<http::status>(status), 11};
  res.body() = std::move(body);
  return res;
}

void emulator::state::note_request_buffer(std::size_t bytes) {
  std::uint64_t seen = max_request_buffer.load();
  while (bytes > seen && !max_request_buffer.compare_exchange_weak(seen, bytes)) {
  }
}

void emulator::state::reset_counters() {
  requests = 0;
  tripped = 0;
  faults_applied = 0;
  connections = 0;
  uploads = 0;
  max_request_buffer = 0;
  std::lock_guard lk(mu);
  by_status.clear();
  by_image.clear();
  by_secret.clear();
  by_method.clear();
  by_listing.clear();
  calls.clear();
  upload_log.clear();
}

void emulator::state::reset_all() {
  reset_counters();
  std::lock_guard lk(mu);
  faults.clear();
  limiter.clear();
  cursors.clear();
  cursor_order.clear();
  seed_store();
}

// Uploads and echoed requests stream (they may be megabytes); everything else is read whole
// under the small body_limit, as before.
void emulator::state::prepare_body(const request_t& req, body_sink& body) const {
  std::string_view target = req.target();
  const api_route r = parse_route(target.substr(0, target.find('?')));
  const bool upload = r.kind == route_kind::images_v1 && req.method() == http::verb::post;
  if (!upload && r.kind != route_kind::echo) {
    body.limit = opts.body_limit;
    body.read_limit = opts.body_limit;
    return;
  }
  body.streamed = true;
  body.limit = opts.upload_limit;
  body.read_limit = 4 * static_cast<std::uint64_t>(opts.upload_limit);
  body.hash.emplace();
  if (upload) {
    if (auto boundary = multipart_boundary(req[http::field::content_type])) {
      body.form.emplace(*boundary);
    }
  }
}

}  // namespace imagegate::testing
