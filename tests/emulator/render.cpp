// Rendering for the emulator: deterministic generation, JSON text, envelopes and dates;
// no I/O and no shared state.
#include "tests/emulator/render.hpp"

#include "tests/emulator/route.hpp"

#include <array>
#include <charconv>
#include <ctime>

namespace imagegate::testing::detail {

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

namespace {

// Two decimal digits of v (0..99).
void append2(std::string& out, int v) {
  out += static_cast<char>('0' + v / 10);
  out += static_cast<char>('0' + v % 10);
}

}  // namespace

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

image generate_image(std::string_view id, std::uint64_t seed) {
  static constexpr std::string_view names[] = {"logo",         "hero-banner", "avatar",
                                               "product-shot", "team-photo",  "diagram"};
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

// Appends the record as the API renders it (one string, reserved once: the all-miss
// benchmark renders one per request).
void append_image_json(std::string& j, const image& img, std::string_view hash,
                       const render_tweaks& tw) {
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

std::string ok_envelope(std::string_view result) {
  return std::string(R"({"result":)") + std::string(result) + std::string(envelope_tail);
}

std::string error_envelope(int code, std::string_view message, std::string_view chain) {
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
bool at_end(simdjson::ondemand::document& doc) {
  return doc.current_location().error() == simdjson::OUT_OF_BOUNDS;
}

std::uint64_t ceil_seconds(std::chrono::steady_clock::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms <= 0 ? 0 : static_cast<std::uint64_t>((ms + 999) / 1000);
}

}  // namespace imagegate::testing::detail
