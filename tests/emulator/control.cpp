// The control endpoints (/__emulator/*: faults, stats, the call log, uploads, reset) and
// their JSON; no token, no faults, not counted.
#include "tests/emulator/state.hpp"

#include <cstdio>

namespace imagegate::testing {

using namespace detail;
namespace ondemand = simdjson::ondemand;

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

outcome emulator::state::handle_control(const request_t& req, const body_sink& body) {
  outcome o;
  auto reply = [&o](unsigned status, std::string text) {
    o.res = make_response(status, std::move(text));
    o.res.set(http::field::content_type, "application/json");
    o.res.set(http::field::cache_control, "no-store");
  };
  std::string_view t = req.target();
  t = t.substr(0, t.find('?'));
  if (t == "/__emulator/faults" && req.method() == http::verb::post) {
    fault_rule rule;
    if (auto err = parse_fault_json(body.text, rule)) {
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
  } else if (t == "/__emulator/calls" && req.method() == http::verb::get) {
    std::string_view target = req.target();
    auto q = target.find('?');
    reply(200, calls_json(q == std::string_view::npos ? "" : target.substr(q + 1)));
  } else if (t == "/__emulator/uploads" && req.method() == http::verb::get) {
    reply(200, uploads_json());
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
                  std::to_string(connections.load()) + R"(,"uploads":)" +
                  std::to_string(uploads.load()) + R"(,"max_request_buffer":)" +
                  std::to_string(max_request_buffer.load()) + R"(,"by_status":{)";
  std::lock_guard lk(mu);
  bool first = true;
  for (auto [s, n] : by_status) {
    j += first ? "" : ",";
    j += '"' + std::to_string(s) + "\":" + std::to_string(n);
    first = false;
  }
  j += R"(},"by_method":{)";
  first = true;
  for (const auto& [m, n] : by_method) {
    j += first ? "" : ",";
    j += json_escape(m) + ':' + std::to_string(n);
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
namespace {

// Milliseconds with microsecond precision ("12.345"): a soak can check sliding windows to
// the microsecond while reading plain milliseconds.
void append_ms(std::string& j, std::chrono::microseconds t) {
  const auto us = t.count();
  j += std::to_string(us / 1000);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(us % 1000));
  j += frac;
}

std::string_view mode_name(limiter_mode m) {
  return m == limiter_mode::sliding_window ? "sliding" : "fixed";
}

}  // namespace

// {"limiter":{…},"now_ms":…,"total":N,"dropped":N,"accepted":[ms…],"limited":[ms…]}, the
// calls after `since_ms` when the query gives it.
std::string emulator::state::calls_json(std::string_view query) {
  std::chrono::microseconds since{-1};
  if (auto s = query_param(query, "since_ms")) {
    if (auto ms = parse_number<double>(*s); ms && *ms >= 0 && *ms < 1e12) {
      since = std::chrono::microseconds(static_cast<std::int64_t>(*ms * 1000 + 0.5));
    }
  }
  const auto now =
      std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - started);
  std::vector<call_record> records;
  std::uint64_t total = 0;
  std::uint64_t dropped = 0;
  {
    std::lock_guard lk(mu);
    records = calls.since(since);
    total = calls.total();
    dropped = calls.dropped();
  }
  const limiter_settings& ls = limiter.settings();
  std::string j = R"({"limiter":{"mode":")" + std::string(mode_name(ls.mode)) + R"(","limit":)" +
                  std::to_string(ls.limit) + R"(,"window_ms":)" +
                  std::to_string(ls.window.count()) + R"(,"block_ms":)" +
                  std::to_string(ls.block.count()) + R"(},"now_ms":)";
  append_ms(j, now);
  j += R"(,"total":)" + std::to_string(total) + R"(,"dropped":)" + std::to_string(dropped);
  j.reserve(j.size() + records.size() * 12 + 32);
  for (const bool limited : {false, true}) {
    j += limited ? R"(],"limited":[)" : R"(,"accepted":[)";
    bool first = true;
    for (const auto& r : records) {
      if (r.limited == limited) {
        j += first ? "" : ",";
        append_ms(j, r.at);
        first = false;
      }
    }
  }
  return j + "]}";
}

std::string emulator::state::uploads_json() {
  std::string j = R"({"uploads":[)";
  std::lock_guard lk(mu);
  bool first = true;
  for (const auto& u : upload_log) {
    j += first ? "{" : ",{";
    j += R"("account":)" + json_escape(u.account) + R"(,"id":)" + json_escape(u.id) +
         R"(,"body_bytes":)" + std::to_string(u.body_bytes) + R"(,"from_url":)" +
         (u.from_url ? "true" : "false") + R"(,"url":)" + json_escape(u.url) + R"(,"file_bytes":)" +
         std::to_string(u.file_bytes) + R"(,"file_sha256":)" + json_escape(u.file_sha256) +
         R"(,"file_name":)" + json_escape(u.file_name) + R"(,"file_content_type":)" +
         json_escape(u.file_content_type) + "}";
    first = false;
  }
  return j + "]}";
}

}  // namespace imagegate::testing
