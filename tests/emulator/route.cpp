// Path classification for the emulator (pure string work; one allocation for the id).
#include "tests/emulator/route.hpp"

#include <charconv>

namespace imagegate::testing {

namespace {

constexpr std::string_view api_prefix = "/client/v4/";
constexpr std::string_view accounts = "accounts/";

std::string_view first_component(std::string_view s) { return s.substr(0, s.find('/')); }

}  // namespace

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

route_kind classify_image_id(std::string_view id) {
  const std::string_view first = first_component(id);
  const bool single = first.size() == id.size();
  if (first == "keys") {
    return single ? route_kind::keys : route_kind::echo;  // keys/{name}: PUT/DELETE upstream
  }
  if (first == "stats") {
    return single ? route_kind::stats : route_kind::no_route;
  }
  if (first == "variants") {
    if (single) {
      return route_kind::variants;
    }
    std::string_view name = id.substr(first.size() + 1);
    return name.empty() || name.find('/') != std::string_view::npos ? route_kind::no_route
                                                                    : route_kind::variant;
  }
  constexpr std::string_view blob = "/blob";
  if (id.size() > blob.size() && id.ends_with(blob)) {
    return route_kind::blob;
  }
  return route_kind::image;
}

api_route parse_route(std::string_view path) {
  api_route r;
  if (!path.starts_with(api_prefix)) {
    return r;
  }
  r.kind = route_kind::echo;
  std::string_view rest = path.substr(api_prefix.size());
  if (!rest.starts_with(accounts)) {
    return r;
  }
  rest.remove_prefix(accounts.size());
  auto slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos) {
    return r;  // accounts/ or accounts/{a}: an echo without an account
  }
  r.account = rest.substr(0, slash);
  rest.remove_prefix(slash + 1);
  if (rest == "images/v1") {
    r.kind = route_kind::images_v1;
    return r;
  }
  if (rest == "images/v2") {
    r.kind = route_kind::images_v2;
    return r;
  }
  constexpr std::string_view v1 = "images/v1/";
  if (!rest.starts_with(v1)) {
    return r;
  }
  rest.remove_prefix(v1.size());
  // An empty segment (v1/, a trailing or doubled raw '/') names no image.
  if (rest.empty() || rest.front() == '/' || rest.back() == '/' ||
      rest.find("//") != std::string_view::npos) {
    r.kind = route_kind::no_route;
    return r;
  }
  auto id = percent_decode(rest);
  if (!id) {
    r.kind = route_kind::bad_id;
    return r;
  }
  r.kind = classify_image_id(*id);
  if (r.kind == route_kind::blob) {
    id->resize(id->size() - 5);
  } else if (r.kind == route_kind::variant) {
    id->erase(0, first_component(*id).size() + 1);
  } else if (r.kind != route_kind::image) {
    id->clear();
  }
  r.id = std::move(*id);
  return r;
}

}  // namespace imagegate::testing
