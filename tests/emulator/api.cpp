// API request handling (synchronous; locks state::mu briefly): counters, rate limit and
// faults for every call, authentication, and the image routes (details, PATCH, DELETE, blob).
#include "tests/emulator/state.hpp"

#include <algorithm>

namespace imagegate::testing {

using namespace detail;
namespace ondemand = simdjson::ondemand;

namespace {

std::string_view status_message(unsigned status) {
  return status == 503 ? "Service unavailable" : "Internal server error";
}

constexpr std::string_view throttled = "Please wait and consider throttling your request speed";

// A 1x1 transparent PNG: what the blob route answers for every image (the emulator never
// keeps uploaded bytes).
constexpr unsigned char png_1x1[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
    0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
    0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78,
    0xda, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa, 0xdc, 0xd8,
    0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

}  // namespace

outcome emulator::state::handle(const request_t& req, const body_sink& body) {
  if (req.target().starts_with("/__emulator/")) {
    return handle_control(req, body);
  }
  outcome o = handle_api(req, body);
  o.close = o.close || !req.keep_alive();
  if (o.act != action::reset && o.act != action::hang) {
    count_status(o.res.result_int());
  }
  return o;
}

outcome emulator::state::handle_api(const request_t& req, const body_sink& body) {
  ++requests;
  std::string_view target = req.target();
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query = qpos == std::string_view::npos ? "" : target.substr(qpos + 1);

  const api_route r = parse_route(path);
  const bool has_id = r.kind == route_kind::image || r.kind == route_kind::blob;
  if (has_id) {
    count_image(r.id);
  }

  const auto now = clock_type::now();
  std::string key(req[http::field::authorization]);
  if (key.empty() && req.count("X-Auth-Key") != 0) {
    key = "key:" + std::string(req["X-Auth-Email"]) + "\n" + std::string(req["X-Auth-Key"]);
  }
  count_secret(req);
  limiter_verdict rl;
  {
    std::lock_guard lk(mu);
    rl = limiter.consume(key, now);
    calls.add({std::chrono::duration_cast<std::chrono::microseconds>(now - started), rl.limited});
    const std::string_view method = req.method_string();
    if (auto it = by_method.find(method); it != by_method.end()) {
      ++it->second;
    } else if (by_method.size() < 64) {
      by_method.emplace(method, 1);
    }
  }

  outcome o;
  render_tweaks tw;
  auto fault = take_fault(has_id ? &r.id : nullptr);
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
      o.res = make_response(429, error_envelope(971, throttled));
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
    o.res = make_response(429, error_envelope(971, throttled));
    api_headers(o.res, rl);
    o.res.set(http::field::retry_after, std::to_string(rl.reset_seconds));
  } else {
    o.res = route(req, r, path, query, body, tw);
    api_headers(o.res, rl);
  }
  if (fault && fault->kind == fault_kind::invalid_json) {
    auto& b = o.res.body();
    b.resize(b.size() / 2);
    b += "\x01}]";
  }
  return o;
}

response_t emulator::state::route(const request_t& req, const api_route& r, std::string_view path,
                                  std::string_view query, const body_sink& body,
                                  const render_tweaks& tw) {
  // Authentication first, as the real API: RFC 6750 §2.1 "Bearer" credentials, or the
  // legacy X-Auth-Email + X-Auth-Key pair.
  auto auth_it = req.find(http::field::authorization);
  auto email_it = req.find("X-Auth-Email");
  auto key_it = req.find("X-Auth-Key");
  const bool key_pair = email_it != req.end() && key_it != req.end();
  if (auth_it == req.end() && !key_pair) {
    return make_response(400, error_envelope(9106,
                                             "Missing X-Auth-Key, X-Auth-Email or "
                                             "Authorization headers"));
  }
  // Which configured credential this is: null for the default token (every account).
  const emulator_credential* who = nullptr;
  bool known = false;
  if (auth_it != req.end()) {
    std::string_view auth = auth_it->value();
    constexpr std::string_view scheme = "bearer ";
    bool well_formed = auth.size() > scheme.size() &&
                       std::equal(scheme.begin(), scheme.end(), auth.begin(),
                                  [](char a, char b) {
                                    return a == std::tolower(static_cast<unsigned char>(b));
                                  }) &&
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
      if (!known && c.token.empty() && c.email == email_it->value() && c.key == key_it->value()) {
        who = &c;
        known = true;
      }
    }
  }
  if (!known) {
    return make_response(opts.unknown_credential_status,
                         error_envelope(10000, "Authentication error"));
  }

  auto no_route = [] { return make_response(404, error_envelope(7000, "No route for that URI")); };
  auto not_allowed = [] { return make_response(405, error_envelope(7001, "Method not allowed")); };
  if (r.kind == route_kind::outside) {
    return no_route();
  }
  if (r.account.empty()) {
    return echo(req, path, query, body);  // /zones, /user/…: no account to check
  }
  if (who != nullptr && !who->accounts.empty() &&
      std::find(who->accounts.begin(), who->accounts.end(), r.account) == who->accounts.end()) {
    // A valid credential without access to this account.
    return make_response(403, error_envelope(10000, "Authentication error"));
  }
  std::lock_guard lk(mu);
  auto acc_it = accounts.find(r.account);
  if (acc_it == accounts.end()) {
    return make_response(404,
                         error_envelope(7003, "Could not route to " + std::string(path.substr(10)) +
                                                  ", perhaps your object identifier is "
                                                  "invalid?"));
  }
  account_store& acc = acc_it->second;
  const auto method = req.method();
  switch (r.kind) {
  case route_kind::image: return image_request(req, acc, r.id, body, tw);
  case route_kind::blob: {
    if (method != http::verb::get) {
      return not_allowed();
    }
    image generated;
    if (peek_image(acc, r.id, generated) == nullptr) {
      return make_response(404, error_envelope(5404, "Image not found"));
    }
    response_t res =
        make_response(200, std::string(reinterpret_cast<const char*>(png_1x1), sizeof png_1x1));
    res.set(http::field::content_type, "image/png");
    return res;
  }
  case route_kind::images_v1:
    if (method == http::verb::get) {
      return list_images_v1(acc, query);
    }
    if (method == http::verb::post) {
      return upload_image(acc, r.account, req, body);
    }
    return not_allowed();
  case route_kind::images_v2:
    return method == http::verb::get ? list_images_v2(acc_it->first, query) : not_allowed();
  case route_kind::keys:
  case route_kind::stats:
  case route_kind::variants:
  case route_kind::variant:
    if (method == http::verb::get) {
      return sibling(r, acc, r.account);
    }
    // Creating and changing variants is not emulated: it stands in as an echo.
    return r.kind == route_kind::variants || r.kind == route_kind::variant
               ? echo(req, path, query, body)
               : not_allowed();
  case route_kind::bad_id:
    return make_response(400, error_envelope(5400, "Bad request: malformed image id"));
  case route_kind::echo: return echo(req, path, query, body);
  case route_kind::no_route:
  case route_kind::outside: break;
  }
  return no_route();
}

// Requires mu held.
response_t emulator::state::image_request(const request_t& req, account_store& acc,
                                          const std::string& id, const body_sink& body,
                                          const render_tweaks& tw) {
  switch (req.method()) {
  case http::verb::get: {
    image generated;
    const image* img = peek_image(acc, id, generated);
    if (img == nullptr) {
      return make_response(404, error_envelope(5404, "Image not found"));
    }
    return make_response(200, padded_image_envelope(*img, acc.hash, tw));
  }
  case http::verb::patch: return patch_image(acc, id, body.text, tw);
  case http::verb::delete_:
    if (find_image(acc, id) == nullptr) {
      return make_response(404, error_envelope(5404, "Image not found"));
    }
    acc.images.erase(id);
    acc.deleted.insert(id);
    return make_response(200, ok_envelope("{}"));
  default: return make_response(405, error_envelope(7001, "Method not allowed"));
  }
}

// Requires mu held. With any_image_exists, an id never stored is rendered from a record
// generated into `scratch` and not kept, so an all-miss load costs the same per request
// from the first to the ten-millionth id and the emulator's memory stays flat.
const emulator::state::image* emulator::state::peek_image(account_store& acc, const std::string& id,
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
emulator::state::image* emulator::state::find_image(account_store& acc, const std::string& id) {
  auto it = acc.images.find(id);
  if (it != acc.images.end()) {
    return &it->second;
  }
  if (!opts.any_image_exists || acc.deleted.contains(id)) {
    return nullptr;
  }
  return &acc.images.emplace(id, generate_image(id, opts.seed)).first->second;
}

// Requires mu held. The body fields of upstream-api.md: creator (string or null), metadata
// (object ≤ 1024 bytes), requireSignedURLs (bool); anything else is a 400.
response_t emulator::state::patch_image(account_store& acc, const std::string& id,
                                        std::string_view text, const render_tweaks& tw) {
  image* img = find_image(acc, id);
  if (img == nullptr) {
    return make_response(404, error_envelope(5404, "Image not found"));
  }
  auto bad = [](std::string_view why) {
    return make_response(400, error_envelope(5400, "Bad request: " + std::string(why)));
  };
  image updated = *img;
  simdjson::padded_string body(text);
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

}  // namespace imagegate::testing
