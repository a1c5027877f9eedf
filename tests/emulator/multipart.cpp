// The multipart/form-data state machine: delimiters are searched in a window that keeps
// only what could still be the start of one, so memory does not grow with the body.
#include "tests/emulator/multipart.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace imagegate::testing {

namespace {

constexpr std::string_view crlf = "\r\n";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// `type; name=value; name="quoted \" value"`: the type, then the parameters in order (names
// lowercased). Returns nullopt on an unterminated quoted string.
struct header_value {
  std::string_view type;
  std::vector<std::pair<std::string, std::string>> params;

  const std::string* param(std::string_view name) const {
    for (const auto& [k, v] : params) {
      if (k == name) {
        return &v;
      }
    }
    return nullptr;
  }
};

std::optional<header_value> parse_header_value(std::string_view s) {
  header_value out;
  auto semi = s.find(';');
  out.type = trim(s.substr(0, semi));
  s = semi == std::string_view::npos ? std::string_view{} : s.substr(semi + 1);
  while (!trim(s).empty()) {
    s = trim(s);
    auto eq = s.find('=');
    if (eq == std::string_view::npos) {
      return std::nullopt;
    }
    std::string name;
    for (char c : trim(s.substr(0, eq))) {
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    s = trim(s.substr(eq + 1));
    std::string value;
    if (!s.empty() && s.front() == '"') {
      std::size_t i = 1;
      for (; i < s.size() && s[i] != '"'; ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          ++i;
        }
        value += s[i];
      }
      if (i >= s.size()) {
        return std::nullopt;
      }
      s.remove_prefix(i + 1);
      s = trim(s);
      if (!s.empty() && s.front() != ';') {
        return std::nullopt;
      }
    } else {
      auto end = s.find(';');
      value = std::string(trim(s.substr(0, end)));
      s = end == std::string_view::npos ? std::string_view{} : s.substr(end);
    }
    if (!s.empty()) {
      s.remove_prefix(1);  // the ';'
    }
    out.params.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

// The parts the upload route reads; any other part is discarded unread.
constexpr std::array<std::string_view, 5> kept_fields = {"id", "url", "metadata",
                                                         "requireSignedURLs", "creator"};

}  // namespace

std::optional<std::string> multipart_boundary(std::string_view content_type) {
  auto v = parse_header_value(content_type);
  if (!v || !iequals(v->type, "multipart/form-data")) {
    return std::nullopt;
  }
  const std::string* b = v->param("boundary");
  if (b == nullptr || b->empty() || b->size() > 70 || b->back() == ' ' ||
      !std::all_of(b->begin(), b->end(), [](char c) { return c >= 0x20 && c < 0x7f; })) {
    return std::nullopt;
  }
  return *b;
}

multipart_reader::multipart_reader(std::string_view boundary)
    : delimiter_(std::string(crlf) + "--" + std::string(boundary)) {
  // The first delimiter may open the body without a CRLF before it: pretend there was one.
  pending_ = crlf;
}

std::size_t multipart_reader::held() const noexcept {
  std::size_t n = pending_.capacity();
  for (const auto& [k, v] : form_.fields) {
    n += v.capacity();
  }
  return n;
}

void multipart_reader::fail(std::string why) {
  if (!form_.error) {
    form_.error = std::move(why);
  }
  state_ = state::failed;
  pending_.clear();
  pending_.shrink_to_fit();
}

void multipart_reader::feed(std::string_view bytes) {
  if (state_ == state::failed || state_ == state::epilogue) {
    return;  // the rest is discarded (RFC 2046 §5.1.1: the epilogue is ignored)
  }
  pending_.append(bytes);
  std::size_t used = 0;  // consumed from the front of pending_
  for (;;) {
    std::string_view rest = std::string_view(pending_).substr(used);
    if (state_ == state::preamble || state_ == state::data) {
      auto pos = rest.find(delimiter_);
      if (pos == std::string_view::npos) {
        // Everything but a possible delimiter prefix at the end can be passed on.
        std::size_t keep = std::min(rest.size(), delimiter_.size() - 1);
        if (state_ == state::data) {
          part_data(rest.substr(0, rest.size() - keep));
          if (state_ == state::failed) {
            return;
          }
        }
        used += rest.size() - keep;
        break;
      }
      if (state_ == state::data) {
        part_data(rest.substr(0, pos));
        if (state_ == state::failed) {
          return;
        }
        end_part();
      }
      used += pos + delimiter_.size();
      state_ = state::after_delimiter;
    } else if (state_ == state::after_delimiter) {
      // RFC 2046 §5.1.1: optional linear whitespace, then CRLF or "--" (the close).
      auto start = rest.find_first_not_of(" \t");
      if (start == std::string_view::npos) {
        if (rest.size() > 64) {
          fail("malformed delimiter line");
        }
        break;
      }
      if (start > 64) {
        fail("malformed delimiter line");
        return;
      }
      rest.remove_prefix(start);
      if (rest.size() < 2) {
        break;
      }
      if (rest.starts_with("--")) {
        state_ = state::epilogue;
        pending_.clear();
        return;
      }
      if (!rest.starts_with(crlf)) {
        fail("malformed delimiter line");
        return;
      }
      used += start + 2;
      state_ = state::headers;
    } else if (state_ == state::headers) {
      if (rest.size() >= 2 && rest.starts_with(crlf)) {
        fail("a part without Content-Disposition");
        return;
      }
      auto end = rest.find("\r\n\r\n");
      if (end == std::string_view::npos ? rest.size() > max_header_block : end > max_header_block) {
        fail("part header block too large");
        return;
      }
      if (end == std::string_view::npos) {
        break;
      }
      begin_part(rest.substr(0, end));
      if (state_ == state::failed) {
        return;
      }
      used += end + 4;
      state_ = state::data;
    } else {
      break;
    }
  }
  pending_.erase(0, used);
}

void multipart_reader::finish() {
  if (state_ != state::epilogue && state_ != state::failed) {
    fail("body ends before the closing boundary");
  }
}

void multipart_reader::begin_part(std::string_view block) {
  if (++parts_ > max_parts) {
    fail("too many parts");
    return;
  }
  std::optional<header_value> disposition;
  std::string content_type;
  while (!block.empty()) {
    auto eol = block.find(crlf);
    std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view{} : block.substr(eol + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      fail("malformed part header");
      return;
    }
    std::string_view name = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "Content-Disposition")) {
      disposition = parse_header_value(value);
      if (!disposition || !iequals(disposition->type, "form-data")) {
        fail("Content-Disposition must be form-data");
        return;
      }
    } else if (iequals(name, "Content-Type")) {
      content_type = std::string(value);
    }
  }
  const std::string* part_name = disposition ? disposition->param("name") : nullptr;
  if (part_name == nullptr || part_name->empty()) {
    fail("a part without a name");
    return;
  }
  field_name_ = *part_name;
  field_bytes_ = 0;
  if (field_name_ == "file") {
    if (form_.has_file) {
      fail("more than one file part");
      return;
    }
    kind_ = part_kind::file;
    form_.has_file = true;
    const std::string* filename = disposition->param("filename");
    form_.file_name = filename != nullptr ? *filename : std::string();
    form_.file_content_type = std::move(content_type);
  } else if (std::find(kept_fields.begin(), kept_fields.end(), field_name_) != kept_fields.end()) {
    if (form_.fields.contains(field_name_)) {
      fail("duplicate part " + field_name_);
      return;
    }
    kind_ = part_kind::field;
    form_.fields.emplace(field_name_, std::string());
  } else {
    kind_ = part_kind::ignored;
    form_.ignored.push_back(field_name_);
  }
}

void multipart_reader::part_data(std::string_view bytes) {
  if (kind_ == part_kind::file) {
    form_.file_bytes += bytes.size();
    file_hash_.update(bytes);
  } else if (kind_ == part_kind::field) {
    field_bytes_ += bytes.size();
    if (field_bytes_ > max_field_bytes) {
      fail("part " + field_name_ + " too large");
      return;
    }
    form_.fields[field_name_].append(bytes);
  }
}

void multipart_reader::end_part() {
  if (kind_ == part_kind::file) {
    form_.file_sha256 = file_hash_.hex_digest();
  }
  kind_ = part_kind::ignored;
}

}  // namespace imagegate::testing
