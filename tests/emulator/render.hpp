// How the emulator renders its world: deterministic ids and image records, Cloudflare's JSON
// envelope, HTTP dates, and the small text helpers the request handlers share.
#pragma once

#include <simdjson.h>

#include <chrono>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::testing::detail {

// Inline: every API response draws its cf-ray and cookies from these.
inline std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline std::uint64_t fnv1a(std::string_view s, std::uint64_t basis = 0xcbf29ce484222325ULL) {
  std::uint64_t h = basis;
  for (unsigned char c : s) {
    h = (h ^ c) * 0x100000001b3ULL;
  }
  return h;
}

inline constexpr char hex_digits[] = "0123456789abcdef";

inline std::string to_hex(std::uint64_t v, int digits) {
  std::string out(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) {
    out[static_cast<std::size_t>(i)] = hex_digits[v & 0xf];
  }
  return out;
}

/// Version-4-looking UUID (real generated ids look like this; nothing parses them as UUIDs).
std::string make_uuid(std::uint64_t& rng);
/// The 22-character account hash that appears in imagedelivery.net URLs.
std::string delivery_hash(std::string_view account, std::uint64_t seed);
/// 2021-05-04T12:34:56.789Z
std::string iso8601(std::int64_t epoch_ms);
/// RFC 9110 IMF-fixdate.
std::string http_date(std::chrono::system_clock::time_point tp);

/// Appends s as a JSON string literal.
void append_json_string(std::string& out, std::string_view s);
std::string json_escape(std::string_view s);

/// One stored image record.
struct image {
  std::string id;
  std::string filename;
  std::string uploaded;
  std::string meta_json = "{}";  // a JSON object, stored as text
  std::optional<std::string> creator;
  bool require_signed_urls = false;
  bool draft = false;
};

/// The record the emulator derives from an id (and seed).
image generate_image(std::string_view id, std::uint64_t seed);

/// How a fault bends an otherwise valid image rendering.
struct render_tweaks {
  bool wrong_id = false;
  bool wrong_types = false;
  std::size_t pad_to = 0;  // total envelope bytes at least
};

/// The variants every image has (and /images/v1/variants lists).
inline constexpr std::string_view variant_names[] = {"public", "thumbnail", "hero"};

/// Appends the record as the API renders it.
void append_image_json(std::string& j, const image& img, std::string_view hash,
                       const render_tweaks& tw = {});

inline constexpr std::string_view envelope_tail = R"(,"success":true,"errors":[],"messages":[]})";
std::string ok_envelope(std::string_view result);
std::string error_envelope(int code, std::string_view message, std::string_view chain = {});
std::string image_envelope(const image& img, std::string_view hash, const render_tweaks& tw);
/// The image envelope, its meta padded so the whole reaches `tw.pad_to` bytes.
std::string padded_image_envelope(const image& img, std::string_view hash, const render_tweaks& tw);

std::vector<std::string_view> split(std::string_view s, char sep);
/// The decoded value of `name` in a query string, or nullopt when absent or undecodable.
std::optional<std::string> query_param(std::string_view query, std::string_view name);
/// simdjson 3.0.1's document has no public at_end(): true once the whole input was read.
bool at_end(simdjson::ondemand::document& doc);
std::uint64_t ceil_seconds(std::chrono::steady_clock::duration d);

template <class T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

}  // namespace imagegate::testing::detail
