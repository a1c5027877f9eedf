// Request bodies that are streamed, not kept: the image upload (multipart/form-data, the
// `file` part hashed) and the echo that stands in for every API route not emulated.
#include "tests/emulator/state.hpp"

#include <algorithm>
#include <cctype>

namespace imagegate::testing {

using namespace detail;
namespace ondemand = simdjson::ondemand;

namespace {

response_t bad_request(std::string_view why) {
  return emulator::state::make_response(400,
                                        error_envelope(5400, "Bad request: " + std::string(why)));
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return a == std::tolower(static_cast<unsigned char>(b));
         });
}

// The text of a JSON object (at most 1024 bytes, nothing after it), or nullopt.
std::optional<std::string> json_object_text(std::string_view text) {
  if (text.size() > 1024) {
    return std::nullopt;
  }
  simdjson::padded_string body(text);
  ondemand::parser parser;
  ondemand::document doc;
  ondemand::object obj;
  std::string_view raw;
  if (parser.iterate(body).get(doc) || doc.get_object().get(obj) || obj.raw_json().get(raw) ||
      !at_end(doc)) {
    return std::nullopt;
  }
  return std::string(raw);
}

// A custom id the API could address: 1..1024 bytes, no control characters, no '/' at either
// end, and not one of the reserved names (keys, stats, variants[/…], …/blob).
bool valid_custom_id(std::string_view id) {
  return !id.empty() && id.size() <= 1024 && id.front() != '/' && id.back() != '/' &&
         std::none_of(id.begin(), id.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }) &&
         classify_image_id(id) == route_kind::image;
}

// The file name Cloudflare shows for a URL upload: its last path segment.
std::string url_filename(std::string_view url) {
  url = url.substr(0, url.find_first_of("?#"));
  auto slash = url.rfind('/');
  std::string_view name = slash == std::string_view::npos ? url : url.substr(slash + 1);
  return name.empty() ? std::string("image") : std::string(name);
}

}  // namespace

// Requires mu held. Cloudflare's codes where its error table has one (5413 too large, 5415
// not a form, 5400 bad request); a custom id that exists already is our choice: 409 code
// 5409 "Resource already exists" (the real code is not documented).
response_t emulator::state::upload_image(account_store& acc, std::string_view account,
                                         const request_t& req, const body_sink& body) {
  if (body.too_large) {
    return make_response(413, error_envelope(5413, "Maximum image size of 10 Mb is reached"));
  }
  if (!starts_with_nocase(req[http::field::content_type], "multipart/form-data")) {
    return make_response(
        415, error_envelope(5415, "Images must be uploaded as a form, not as raw image data"));
  }
  if (!body.form) {
    return bad_request("multipart/form-data without a valid boundary");
  }
  const upload_form& f = body.form->form();
  if (f.error) {
    return bad_request("malformed multipart body: " + *f.error);
  }
  auto field = [&f](std::string_view name) -> const std::string* {
    auto it = f.fields.find(name);
    return it == f.fields.end() ? nullptr : &it->second;
  };
  const std::string* url = field("url");
  if (f.has_file == (url != nullptr)) {
    return bad_request(f.has_file ? "file and url are mutually exclusive"
                                  : "either file or url is required");
  }
  if (url != nullptr && !starts_with_nocase(*url, "http://") &&
      !starts_with_nocase(*url, "https://")) {
    return bad_request("url must be an http(s) URL");
  }
  image img;
  if (const std::string* rsu = field("requireSignedURLs")) {
    if (*rsu != "true" && *rsu != "false") {
      return bad_request("requireSignedURLs must be true or false");
    }
    img.require_signed_urls = *rsu == "true";
  }
  if (const std::string* meta = field("metadata")) {
    auto text = json_object_text(*meta);
    if (!text) {
      return bad_request("metadata must be a JSON object of at most 1024 bytes");
    }
    img.meta_json = std::move(*text);
  }
  if (const std::string* creator = field("creator")) {
    if (creator->size() > 1024) {
      return bad_request("creator must be at most 1024 bytes");
    }
    img.creator = *creator;
  }
  if (const std::string* id = field("id")) {
    if (!valid_custom_id(*id)) {
      return bad_request("invalid custom id");
    }
    if (img.require_signed_urls) {
      // Cloudflare: images with a custom id cannot be made private.
      return bad_request("a custom id cannot be used with requireSignedURLs");
    }
    image scratch;
    if (peek_image(acc, *id, scratch) != nullptr) {
      return make_response(409, error_envelope(5409, "Resource already exists"));
    }
    img.id = *id;
  } else {
    do {
      img.id = make_uuid(upload_rng);
    } while (acc.images.contains(img.id));
  }
  img.filename = url != nullptr ? url_filename(*url)
                                : (f.file_name.empty() ? std::string("image") : f.file_name);
  img.filename.resize(std::min<std::size_t>(img.filename.size(), 255));
  img.uploaded = iso8601(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count());

  upload_record rec;
  rec.account = std::string(account);
  rec.id = img.id;
  rec.body_bytes = body.bytes;
  rec.from_url = url != nullptr;
  rec.url = url != nullptr ? *url : std::string();
  rec.file_bytes = f.file_bytes;
  rec.file_sha256 = f.file_sha256;
  rec.file_name = f.file_name;
  rec.file_content_type = f.file_content_type;
  upload_log.push_back(std::move(rec));
  if (upload_log.size() > max_upload_records) {
    upload_log.pop_front();
  }
  ++uploads;

  acc.deleted.erase(img.id);
  auto [it, fresh] = acc.images.insert_or_assign(img.id, std::move(img));
  return make_response(200, image_envelope(it->second, acc.hash, {}));
}

// What arrived, for a forwarding gateway's tests: method, path, query, body size and hash,
// and the request header names in order (lowercase; values are never echoed, credentials
// among them).
response_t emulator::state::echo(const request_t& req, std::string_view path,
                                 std::string_view query, const body_sink& body) {
  if (body.too_large) {
    return make_response(413, error_envelope(5413, "Request body too large"));
  }
  std::string j = R"({"method":)" + json_escape(req.method_string()) + R"(,"path":)" +
                  json_escape(path) + R"(,"query":)" + json_escape(query) + R"(,"body_bytes":)" +
                  std::to_string(body.bytes) + R"(,"body_sha256":)";
  j += json_escape(body.streamed ? body.sha256_hex : sha256::of(body.text));
  j += R"(,"content_type":)" + json_escape(req[http::field::content_type]);
  j += R"(,"headers":[)";
  bool first = true;
  for (const auto& f : req) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    j += first ? "" : ",";
    j += json_escape(name);
    first = false;
  }
  j += "]}";
  return make_response(200, ok_envelope(j));
}

}  // namespace imagegate::testing
