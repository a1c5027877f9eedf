// Read-only Images routes besides image details: the v2 listing (opaque continuation
// tokens), the deprecated v1 listing, and the siblings keys, stats and variants.
#include "tests/emulator/state.hpp"

namespace imagegate::testing {

using namespace detail;

namespace {

response_t bad_request(std::string_view why) {
  return emulator::state::make_response(400,
                                        error_envelope(5400, "Bad request: " + std::string(why)));
}

// `per_page` as both listings take it (Cloudflare's schema: 10..10000, default 1000).
std::optional<std::size_t> per_page_of(std::string_view query, std::string& error) {
  auto p = query_param(query, "per_page");
  if (!p) {
    return 1000;
  }
  auto n = parse_number<std::size_t>(*p);
  if (!n || *n < 10 || *n > 10000) {
    error = "per_page must be between 10 and 10000";
    return std::nullopt;
  }
  return n;
}

// The `creator` filter of both listings: absent, "" (images without a creator), or a value.
bool creator_matches(const image& img, const std::optional<std::string>& creator) {
  if (!creator) {
    return true;
  }
  return creator->empty() ? !img.creator : img.creator == *creator;
}

std::string render_images(const std::vector<const image*>& page, std::string_view hash) {
  std::string r = R"({"images":[)";
  for (std::size_t i = 0; i < page.size(); ++i) {
    r += i ? "," : "";
    append_image_json(r, *page[i], hash);
  }
  return r + ']';
}

std::string variant_json(std::string_view name) {
  struct def {
    std::string_view fit, metadata;
    int width, height;
  };
  const def d = name == "thumbnail" ? def{"cover", "none", 200, 200}
                : name == "hero"    ? def{"scale-down", "copyright", 1920, 1080}
                                    : def{"scale-down", "keep", 1366, 768};
  std::string j = R"({"id":)" + json_escape(name) + R"(,"options":{"fit":")" + std::string(d.fit) +
                  R"(","height":)" + std::to_string(d.height) + R"(,"metadata":")" +
                  std::string(d.metadata) + R"(","width":)" + std::to_string(d.width) +
                  R"(},"neverRequireSignedURLs":false})";
  return j;
}

}  // namespace

// Requires mu held. Pages are in id order (Cloudflare sorts by upload time; any fixed order
// serves a client that pages). The token names the page's last id in a table of cursors,
// so it stays valid when that image or any other is deleted meanwhile, and it is 32 hex
// characters like Cloudflare's (maxLength 32), whatever the id's length.
response_t emulator::state::list_images_v2(const std::string& account, std::string_view query) {
  std::string error;
  const auto per_page = per_page_of(query, error);
  if (!per_page) {
    return bad_request(error);
  }
  bool desc = false;
  if (auto s = query_param(query, "sort_order")) {
    if (*s != "asc" && *s != "desc") {
      return bad_request("sort_order must be asc or desc");
    }
    desc = *s == "desc";
  }
  const auto creator = query_param(query, "creator");
  std::optional<std::string> after;
  if (auto t = query_param(query, "continuation_token"); t && !t->empty()) {
    auto c = cursors.find(*t);
    if (c == cursors.end() || c->second.account != account || c->second.desc != desc) {
      return bad_request("invalid continuation_token");
    }
    after = c->second.last_id;
  }
  const account_store& acc = accounts.at(account);
  if (const std::string token(query_param(query, "continuation_token").value_or(""));
      by_listing.contains(token) || by_listing.size() < max_counted_ids) {
    ++by_listing[token];
  }
  // One more than a page: whether a next page exists.
  std::vector<const image*> page;
  auto take = [&](const image& img) {
    if (creator_matches(img, creator)) {
      page.push_back(&img);
    }
    return page.size() <= *per_page;
  };
  if (!desc) {
    for (auto it = after ? acc.images.upper_bound(*after) : acc.images.begin();
         it != acc.images.end() && take(it->second); ++it) {
    }
  } else {
    for (auto it = after ? acc.images.lower_bound(*after) : acc.images.end();
         it != acc.images.begin() && take(std::prev(it)->second); --it) {
    }
  }
  const bool more = page.size() > *per_page;
  page.resize(std::min(page.size(), *per_page));
  std::string r = render_images(page, acc.hash);
  r += R"(,"continuation_token":)";
  if (more) {
    const std::string& last = page.back()->id;
    std::string token = sha256::of(account + (desc ? "\nd\n" : "\na\n") + last).substr(0, 32);
    if (cursors.emplace(token, list_cursor{account, last, desc}).second) {
      cursor_order.push_back(token);
      if (cursor_order.size() > max_cursors) {
        cursors.erase(cursor_order.front());
        cursor_order.pop_front();
      }
    }
    r += json_escape(token);
  } else {
    r += "null";
  }
  r += '}';
  return make_response(200, ok_envelope(r));
}

// Requires mu held. The deprecated page-numbered listing, in id order.
response_t emulator::state::list_images_v1(const account_store& acc, std::string_view query) {
  std::string error;
  const auto per_page = per_page_of(query, error);
  if (!per_page) {
    return bad_request(error);
  }
  std::size_t page_no = 1;
  if (auto p = query_param(query, "page")) {
    auto n = parse_number<std::size_t>(*p);
    if (!n || *n < 1 || *n > 1000000000) {
      return bad_request("page must be a positive integer");
    }
    page_no = *n;
  }
  const auto creator = query_param(query, "creator");
  std::uint64_t skip = static_cast<std::uint64_t>(page_no - 1) * *per_page;
  std::vector<const image*> page;
  for (const auto& [id, img] : acc.images) {
    if (page.size() == *per_page) {
      break;
    }
    if (!creator_matches(img, creator)) {
      continue;
    }
    if (skip > 0) {
      --skip;
    } else {
      page.push_back(&img);
    }
  }
  return make_response(200, ok_envelope(render_images(page, acc.hash) + '}'));
}

// Requires mu held. GET of keys, stats, variants, variants/{name}.
response_t emulator::state::sibling(const api_route& r, const account_store& acc,
                                    std::string_view account) {
  switch (r.kind) {
  case route_kind::keys: {
    // A stable made-up signing key per account: 32 random bytes in base64 look.
    std::string key = sha256::of(std::string(account) + "\nsigning key");
    return make_response(200, ok_envelope(R"({"keys":[{"name":"default","value":")" +
                                          key.substr(0, 43) + R"(="}]})"));
  }
  case route_kind::stats:
    return make_response(200, ok_envelope(R"({"count":{"allowed":100000,"current":)" +
                                          std::to_string(acc.images.size()) + "}}"));
  case route_kind::variants: {
    std::string j = R"({"variants":{)";
    bool first = true;
    for (auto v : variant_names) {
      j += first ? "" : ",";
      j += json_escape(v) + ':' + variant_json(v);
      first = false;
    }
    return make_response(200, ok_envelope(j + "}}"));
  }
  default: break;
  }
  for (auto v : variant_names) {
    if (v == r.id) {
      return make_response(200, ok_envelope(R"({"variant":)" + variant_json(v) + '}'));
    }
  }
  return make_response(404, error_envelope(5401, "Variant name not found"));
}

}  // namespace imagegate::testing
