// The emulator, in-process on 127.0.0.1:0, driven through the verified-TLS test client.
#define BOOST_TEST_MODULE emulator
#include <boost/test/unit_test.hpp>

#include "tests/emulator/digest.hpp"
#include "tests/emulator/emulator.hpp"
#include "tests/emulator/limiter.hpp"
#include "tests/emulator/multipart.hpp"
#include "tests/emulator/route.hpp"
#include "tests/support/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/system/system_error.hpp>

#include <simdjson.h>

#include <atomic>
#include <cstdio>
#include <set>
#include <sstream>
#include <thread>
#include <fcntl.h>
#include <unistd.h>

namespace {

namespace testing = imagegate::testing;
namespace asio = imagegate::asio;
using boost::beast::http::verb;
using namespace std::chrono_literals;

const std::string account = "023e105f4ecef8ad9ca31a8372d0c353";
const std::string bearer = "Bearer emulator-token";

// An emulator on its own io_context thread. Destruction stops it and joins the thread, so
// a connection the emulator fails to end turns into a test timeout.
struct running {
  explicit running(testing::emulator_options o = {}) : emu(ioc.get_executor(), std::move(o)) {
    emu.start();
    thread = std::thread([this] { ioc.run(); });
  }
  ~running() {
    emu.stop();
    thread.join();
  }

  testing::endpoint ep(std::chrono::milliseconds timeout = 10s) const {
    testing::endpoint e;
    e.port = emu.port();
    e.ca_pem = emu.ca_pem();
    e.server_name = "localhost";
    e.timeout = timeout;
    return e;
  }

  // For an emulator started with plaintext().
  testing::endpoint plain_ep() const {
    testing::endpoint e = ep(5s);
    e.tls = false;
    return e;
  }

  testing::response get(const std::string& target, std::string auth = bearer) const {
    return testing::request(ep(), verb::get, target, {{"Authorization", std::move(auth)}});
  }

  asio::io_context ioc;
  testing::emulator emu;
  std::thread thread;
};

testing::emulator_options plaintext() {
  testing::emulator_options o;
  o.tls = false;
  return o;
}

std::string image_path(const std::string& id, const std::string& acc = account) {
  return "/client/v4/accounts/" + acc + "/images/v1/" + id;
}

// The first error code of an envelope, or -1.
std::int64_t error_code_of(const std::string& body) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(body).get(doc)) {
    return -1;
  }
  std::int64_t code = -1;
  if (doc["errors"].at(0)["code"].get(code)) {
    return -1;
  }
  return code;
}

std::string result_id(const std::string& body) {
  simdjson::dom::parser p;
  std::string_view id;
  if (p.parse(body)["result"]["id"].get(id)) {
    return "<none>";
  }
  return std::string(id);
}

bool is_valid_json(const std::string& body) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  return !p.parse(body).get(doc);
}

template <class Pred>
bool poll_until(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::yield();
  }
  return pred();
}

testing::fault_rule fault(testing::fault_kind k, std::string id = {},
                          std::optional<std::uint64_t> times = 1) {
  testing::fault_rule r;
  r.kind = k;
  r.image_id = std::move(id);
  r.times = times;
  return r;
}

// One part of a multipart/form-data body.
struct form_part {
  std::string name;
  std::string value;
  std::string filename;      // only for a file part
  std::string content_type;  // only for a file part
};

const std::string boundary = "----imagegate-test-7MA4YWxkTrZu0gW";

std::string multipart(const std::vector<form_part>& parts, const std::string& b = boundary) {
  std::string out;
  for (const auto& p : parts) {
    out += "--" + b + "\r\nContent-Disposition: form-data; name=\"" + p.name + "\"";
    if (!p.filename.empty()) {
      out += "; filename=\"" + p.filename + "\"";
    }
    out += "\r\n";
    if (!p.content_type.empty()) {
      out += "Content-Type: " + p.content_type + "\r\n";
    }
    out += "\r\n" + p.value + "\r\n";
  }
  return out + "--" + b + "--\r\n";
}

// Deterministic bytes that now and then look like the start of a delimiter (CRLF, "--",
// most of the boundary), so a reader that matches too early or too late corrupts the hash.
// Fills `out` in place (no allocation once its capacity suffices).
void tricky_fill(std::string& out, std::size_t n, std::uint64_t seed) {
  out.clear();
  out.reserve(n);
  std::uint64_t x = seed;
  const std::string near = "\r\n--" + boundary.substr(0, boundary.size() - 1);
  while (out.size() < n) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    if ((x >> 60) == 0) {
      out.append(near.data(), 1 + (x >> 8) % near.size());
      out += '!';  // in no boundary: the data never holds a whole delimiter
    } else {
      out += static_cast<char>(x >> 56);
    }
  }
  out.resize(n);
}

std::string tricky_bytes(std::size_t n, std::uint64_t seed = 7) {
  std::string out;
  tricky_fill(out, n, seed);
  return out;
}

testing::header_list form_headers(const std::string& b = boundary) {
  return {{"Authorization", bearer}, {"Content-Type", "multipart/form-data; boundary=" + b}};
}

std::string uploads_path(const std::string& acc = account) {
  return "/client/v4/accounts/" + acc + "/images/v1";
}

// Resident set size of this process, from /proc/self/statm (read without allocating, so
// measuring does not itself grow the heap).
std::size_t rss_bytes() {
  char text[128] = {};
  const int fd = ::open("/proc/self/statm", O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  const auto n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  BOOST_REQUIRE(n > 0);
  std::size_t pages = 0;
  std::size_t resident = 0;
  BOOST_REQUIRE(std::sscanf(text, "%zu %zu", &pages, &resident) == 2);
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

simdjson::dom::element parse(simdjson::dom::parser& p, const std::string& body) {
  simdjson::dom::element doc;
  auto err = p.parse(body).get(doc);
  BOOST_REQUIRE_MESSAGE(!err, "not JSON: " + body.substr(0, 200));
  return doc;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(api)

BOOST_AUTO_TEST_CASE(seeded_image_has_envelope_and_real_headers) {
  running r;
  auto ids = r.emu.image_ids(account);
  BOOST_REQUIRE_EQUAL(ids.size(), 100u);
  auto res = r.get(image_path(ids[3]));
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(res.body.size() >= 500u);
  BOOST_TEST(res.body.size() <= 700u);

  simdjson::dom::parser p;
  simdjson::dom::element doc = p.parse(res.body);
  BOOST_TEST(bool(doc["success"]));
  BOOST_TEST(doc["errors"].get_array().size() == 0u);
  BOOST_TEST(doc["messages"].get_array().size() == 0u);
  auto img = doc["result"];
  BOOST_TEST(std::string_view(img["id"]) == ids[3]);
  BOOST_TEST(!std::string_view(img["filename"]).empty());
  BOOST_TEST(std::string_view(img["uploaded"]).ends_with("Z"));
  BOOST_TEST(img["requireSignedURLs"].is_bool());
  BOOST_TEST(img["meta"].is_object());
  BOOST_TEST((img["creator"].is_string() || img["creator"].is_null()));
  for (auto v : img["variants"].get_array()) {
    std::string_view url = v;
    BOOST_TEST(url.starts_with("https://imagedelivery.net/"));
    BOOST_TEST(url.find("/" + ids[3] + "/") != std::string_view::npos);
  }

  BOOST_TEST(res.header("content-type") == "application/json");
  BOOST_TEST(res.header("cache-control").starts_with("no-store, no-cache, must-revalidate"));
  BOOST_TEST(res.header("expires") == "Sun, 25 Jan 1981 05:00:00 GMT");
  BOOST_TEST(res.count("set-cookie") == 4u);
  std::string cookies;
  for (const auto& [k, v] : res.headers) {
    cookies += k == "Set-Cookie" ? v.substr(0, v.find('=')) + ";" : "";
  }
  BOOST_TEST(cookies == "__cflb;__cf_bm;__cfruid;_cfuvid;");
  BOOST_TEST(res.header("cf-ray").ends_with("-SJC"));
  BOOST_TEST(res.header("ratelimit") == "\"default\";r=1199;t=300");
  BOOST_TEST(res.header("ratelimit-policy") == "\"burst\";q=1200;w=300");
}

BOOST_AUTO_TEST_CASE(seeded_set_is_deterministic) {
  asio::io_context ioc;
  testing::emulator_options a;
  a.tls = false;
  a.image_count = 5;
  auto b = a;
  testing::emulator e1(ioc.get_executor(), a), e2(ioc.get_executor(), b);
  b.seed = 2;
  testing::emulator e3(ioc.get_executor(), b);
  BOOST_TEST(e1.image_ids(account) == e2.image_ids(account));
  BOOST_TEST(e1.image_ids(account) != e3.image_ids(account));
  BOOST_TEST(e1.image_ids(account)[0].size() == 36u);
}

BOOST_AUTO_TEST_CASE(percent_encoded_id_is_one_segment) {
  testing::emulator_options o;
  o.any_image_exists = true;
  running r(o);
  auto res = r.get(image_path("folder%2Fcat%20pic.png"));
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(result_id(res.body) == "folder/cat pic.png");
  BOOST_TEST(r.emu.requests_for("folder/cat pic.png") == 1u);
  // Raw segments spell the same id (as the TypeScript <= v6, Python and Go SDKs send it).
  res = r.get(image_path("folder/cat%20pic.png"));
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(result_id(res.body) == "folder/cat pic.png");
  BOOST_TEST(r.emu.requests_for("folder/cat pic.png") == 2u);
  // An empty segment names no image.
  for (std::string empty : {"", "a/", "a//b", "/a"}) {
    BOOST_TEST_CONTEXT(empty) {
      res = r.get(image_path(empty));
      BOOST_TEST(res.status == 404u);
      BOOST_TEST(error_code_of(res.body) == 7000);
    }
  }
  res = r.get(image_path("bad%zzescape"));
  BOOST_TEST(res.status == 400u);
  BOOST_TEST(error_code_of(res.body) == 5400);
  res = r.get(image_path("draft-1"));
  BOOST_TEST(res.body.find("\"draft\":true") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(errors_not_found_and_auth) {
  running r;
  auto res = r.get(image_path("no-such-image"));
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 5404);
  BOOST_TEST(res.body.find("\"result\":null") != std::string::npos);

  res = r.get(image_path("x", "ffffffffffffffffffffffffffffffff"));
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 7003);
  BOOST_TEST(res.body.find("Could not route to /accounts/ffffffffffffffffffffffffffffffff") !=
             std::string::npos);

  res = r.get(image_path("x"), "Bearer wrong-token");
  BOOST_TEST(res.status == 403u);
  BOOST_TEST(error_code_of(res.body) == 10000);

  for (std::string bad : {"Bearer", "Bearer a b", "Basic Zm9vOmJhcg==", "emulator-token"}) {
    BOOST_TEST_CONTEXT("Authorization: " << bad) {
      res = r.get(image_path("x"), bad);
      BOOST_TEST(res.status == 400u);
      BOOST_TEST(error_code_of(res.body) == 6003);
      BOOST_TEST(res.body.find(R"("error_chain":[{"code":6111,"message":"Invalid format for )"
                               R"(Authorization header"}])") != std::string::npos);
    }
  }
  res = testing::request(r.ep(), verb::get, image_path("x"));
  BOOST_TEST(res.status == 400u);
  BOOST_TEST(error_code_of(res.body) == 9106);
}

BOOST_AUTO_TEST_CASE(rate_limit_counts_down_trips_and_blocks) {
  testing::emulator_options o;
  o.rate_limit = 3;
  o.rate_window = 60s;
  o.block_duration = 30s;
  running r(o);
  auto id = r.emu.image_ids(account).front();
  testing::connection c(r.ep());
  for (int remaining : {2, 1, 0}) {
    auto res = c.request(verb::get, image_path(id), {{"Authorization", bearer}});
    BOOST_TEST(res.status == 200u);
    BOOST_TEST(res.header("ratelimit") == "\"default\";r=" + std::to_string(remaining) + ";t=60");
    BOOST_TEST(res.header("ratelimit-policy") == "\"burst\";q=3;w=60");
  }
  BOOST_TEST(r.emu.tripped() == 0u);
  for (int i = 0; i < 2; ++i) {
    auto res = c.request(verb::get, image_path(id), {{"Authorization", bearer}});
    BOOST_TEST(res.status == 429u);
    BOOST_TEST(error_code_of(res.body) == 971);
    BOOST_TEST(res.header("retry-after") == "30");
  }
  BOOST_TEST(r.emu.tripped() == 2u);
  // Another token has its own budget.
  auto other = r.get(image_path(id), "Bearer someone-else");
  BOOST_TEST(other.status == 403u);
}

BOOST_AUTO_TEST_CASE(rate_limit_block_ends) {
  testing::emulator_options o;
  o.rate_limit = 1;
  o.rate_window = 60s;
  o.block_duration = 100ms;
  running r(o);
  auto id = r.emu.image_ids(account).front();
  BOOST_TEST(r.get(image_path(id)).status == 200u);
  auto res = r.get(image_path(id));
  BOOST_TEST(res.status == 429u);
  BOOST_TEST(res.header("retry-after") == "1");
  BOOST_TEST(poll_until([&] { return r.get(image_path(id)).status == 200u; }));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(faults)

BOOST_AUTO_TEST_CASE(delay_then_normal) {
  running r;
  auto id = r.emu.image_ids(account).front();
  auto f = fault(testing::fault_kind::delay, id);
  f.delay = 300ms;
  r.emu.add_fault(f);
  auto t0 = std::chrono::steady_clock::now();
  auto res = r.get(image_path(id));
  BOOST_TEST(res.status == 200u);
  BOOST_TEST((std::chrono::steady_clock::now() - t0 >= 300ms));
  BOOST_TEST(r.emu.snapshot().faults_applied == 1u);
}

BOOST_AUTO_TEST_CASE(status_5xx_and_429) {
  running r;
  auto id = r.emu.image_ids(account).front();
  r.emu.add_fault(fault(testing::fault_kind::status, id));
  auto f503 = fault(testing::fault_kind::status, id);
  f503.status = 503;
  r.emu.add_fault(f503);
  auto f429 = fault(testing::fault_kind::rate_limited, id);
  f429.retry_after = 7;
  r.emu.add_fault(f429);

  auto res = r.get(image_path(id));
  BOOST_TEST(res.status == 500u);
  BOOST_TEST(error_code_of(res.body) == 5500);
  res = r.get(image_path(id));
  BOOST_TEST(res.status == 503u);
  BOOST_TEST(error_code_of(res.body) == 5503);
  res = r.get(image_path(id));
  BOOST_TEST(res.status == 429u);
  BOOST_TEST(error_code_of(res.body) == 971);
  BOOST_TEST(res.header("retry-after") == "7");
  BOOST_TEST(r.get(image_path(id)).status == 200u);
  BOOST_TEST(r.emu.tripped() == 0u);  // scripted 429s are not the limiter's
}

BOOST_AUTO_TEST_CASE(rule_for_any_id_applies_n_times) {
  running r;
  auto ids = r.emu.image_ids(account);
  auto f = fault(testing::fault_kind::status, {}, 2);
  f.status = 502;
  r.emu.add_fault(f);
  BOOST_TEST(r.get(image_path(ids[0])).status == 502u);
  BOOST_TEST(r.get(image_path(ids[1])).status == 502u);
  BOOST_TEST(r.get(image_path(ids[2])).status == 200u);
  r.emu.add_fault(fault(testing::fault_kind::status, ids[0], std::nullopt));
  BOOST_TEST(r.get(image_path(ids[0])).status == 500u);
  BOOST_TEST(r.get(image_path(ids[0])).status == 500u);
  BOOST_TEST(r.get(image_path(ids[1])).status == 200u);
  r.emu.clear_faults();
  BOOST_TEST(r.get(image_path(ids[0])).status == 200u);
}

BOOST_AUTO_TEST_CASE(reset_and_truncated_fail_the_client) {
  running r;
  auto id = r.emu.image_ids(account).front();
  r.emu.add_fault(fault(testing::fault_kind::reset, id));
  BOOST_CHECK_THROW(r.get(image_path(id)), boost::system::system_error);
  r.emu.add_fault(fault(testing::fault_kind::truncated, id));
  BOOST_CHECK_THROW(r.get(image_path(id)), boost::system::system_error);
  BOOST_TEST(r.get(image_path(id)).status == 200u);
}

BOOST_AUTO_TEST_CASE(body_faults) {
  running r;
  auto id = r.emu.image_ids(account).front();
  const auto normal = r.get(image_path(id));

  r.emu.add_fault(fault(testing::fault_kind::invalid_json, id));
  auto res = r.get(image_path(id));
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(!is_valid_json(res.body));

  r.emu.add_fault(fault(testing::fault_kind::wrong_id, id));
  res = r.get(image_path(id));
  BOOST_TEST(is_valid_json(res.body));
  BOOST_TEST(result_id(res.body) != id);

  r.emu.add_fault(fault(testing::fault_kind::wrong_types, id));
  res = r.get(image_path(id));
  BOOST_TEST(is_valid_json(res.body));
  BOOST_TEST(res.body.find(R"("requireSignedURLs":"yes")") != std::string::npos);

  r.emu.add_fault(fault(testing::fault_kind::chunked, id));
  res = r.get(image_path(id));
  BOOST_TEST(res.header("transfer-encoding") == "chunked");
  BOOST_TEST(res.header("content-length").empty());
  BOOST_TEST(res.body == normal.body);

  auto big = fault(testing::fault_kind::oversized, id);
  big.size = 200000;
  r.emu.add_fault(big);
  res = r.get(image_path(id));
  BOOST_TEST(res.body.size() >= 200000u);
  BOOST_TEST(res.body.size() < 200100u);
  BOOST_TEST(is_valid_json(res.body));
  BOOST_TEST(result_id(res.body) == id);
}

BOOST_AUTO_TEST_CASE(close_after_answer) {
  running r;
  auto id = r.emu.image_ids(account).front();
  r.emu.add_fault(fault(testing::fault_kind::close, id));
  testing::connection c(r.ep());
  auto res = c.request(verb::get, image_path(id), {{"Authorization", bearer}});
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(res.header("connection") == "close");
  BOOST_TEST(!c.is_open());
  BOOST_TEST(r.emu.connections_accepted() == 1u);
}

BOOST_AUTO_TEST_CASE(hang_until_client_times_out) {
  running r;
  auto id = r.emu.image_ids(account).front();
  r.emu.add_fault(fault(testing::fault_kind::hang, id));
  auto t0 = std::chrono::steady_clock::now();
  try {
    testing::request(r.ep(300ms), verb::get, image_path(id), {{"Authorization", bearer}});
    BOOST_FAIL("a hung request must time out");
  } catch (const boost::system::system_error& e) {
    const bool timed_out = e.code() == boost::beast::error::timeout;
    BOOST_TEST(timed_out, e.code().message());
  }
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 5s));
  BOOST_TEST(r.get(image_path(id)).status == 200u);
}

// With a strand per connection (any number of threads) and without (single_threaded: the
// benchmark's upstream): stop() ends hanging and idle connections either way.
BOOST_AUTO_TEST_CASE(stop_ends_hanging_and_idle_connections) {
  for (const bool single : {false, true}) {
    BOOST_TEST_CONTEXT("single_threaded " << single) {
      testing::emulator_options o;
      o.single_threaded = single;
      auto r = std::make_unique<running>(o);
      auto id = r->emu.image_ids(account).front();
      r->emu.add_fault(fault(testing::fault_kind::hang, id));
      testing::connection idle(r->ep());
      BOOST_TEST(idle.request(verb::get, image_path(r->emu.image_ids(account).back()),
                              {{"Authorization", bearer}})
                     .status == 200u);
      std::atomic<bool> failed{false};
      std::thread hung([ep = r->ep(20s), id, &failed] {
        try {
          testing::request(ep, verb::get, image_path(id), {{"Authorization", bearer}});
        } catch (const boost::system::system_error&) {
          failed = true;
        }
      });
      BOOST_TEST(poll_until([&] { return r->emu.snapshot().faults_applied == 1u; }));
      auto t0 = std::chrono::steady_clock::now();
      r.reset();  // stop() + join: returns only once every connection has ended
      hung.join();
      BOOST_TEST(failed.load());
      BOOST_TEST((std::chrono::steady_clock::now() - t0 < 5s));
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(control)

BOOST_AUTO_TEST_CASE(control_endpoints) {
  running r;
  auto id = r.emu.image_ids(account).front();
  auto ep = r.ep();
  auto res =
      testing::request(ep, verb::post, "/__emulator/faults", {},
                       R"({"kind":"status","status":503,"image_id":")" + id + R"(","times":1})");
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(r.get(image_path(id)).status == 503u);
  BOOST_TEST(r.get(image_path(id)).status == 200u);

  res = testing::request(ep, verb::post, "/__emulator/faults", {}, R"({"kind":"explode"})");
  BOOST_TEST(res.status == 400u);
  res = testing::request(ep, verb::post, "/__emulator/faults", {}, R"({"kind":"delay"} x)");
  BOOST_TEST(res.status == 400u);

  testing::request(ep, verb::post, "/__emulator/faults", {}, R"({"kind":"status"})");
  BOOST_TEST(r.get(image_path(id)).status == 500u);
  BOOST_TEST(testing::request(ep, verb::delete_, "/__emulator/faults").status == 200u);
  BOOST_TEST(r.get(image_path(id)).status == 200u);

  res = testing::request(ep, verb::get, "/__emulator/stats");
  BOOST_TEST(res.status == 200u);
  simdjson::dom::parser p;
  simdjson::dom::element s = p.parse(res.body);
  BOOST_TEST(std::uint64_t(s["requests"]) == 4u);
  BOOST_TEST(std::uint64_t(s["by_status"]["200"]) == 2u);
  BOOST_TEST(std::uint64_t(s["by_status"]["503"]) == 1u);
  BOOST_TEST(std::uint64_t(s["by_image"][id]) == 4u);
  BOOST_TEST(std::uint64_t(s["tripped"]) == 0u);
  BOOST_TEST(std::uint64_t(s["connections_accepted"]) >= 9u);

  BOOST_TEST(testing::request(ep, verb::post, "/__emulator/reset").status == 200u);
  BOOST_TEST(r.emu.snapshot().requests == 0u);
  BOOST_TEST(r.emu.requests_for(id) == 0u);
}

BOOST_AUTO_TEST_CASE(counters_on_keep_alive) {
  running r;
  auto ids = r.emu.image_ids(account);
  testing::connection c(r.ep());
  for (int i = 0; i < 3; ++i) {
    c.request(verb::get, image_path(ids[0]), {{"Authorization", bearer}});
  }
  c.request(verb::get, image_path("missing"), {{"Authorization", bearer}});
  auto s = r.emu.snapshot();
  BOOST_TEST(s.connections_accepted == 1u);
  BOOST_TEST(s.requests == 4u);
  BOOST_TEST(s.by_status[200] == 3u);
  BOOST_TEST(s.by_status[404] == 1u);
  BOOST_TEST(r.emu.requests_for(ids[0]) == 3u);
  BOOST_TEST(r.emu.requests_for(ids[1]) == 0u);
  r.emu.reset_counters();
  BOOST_TEST(r.emu.snapshot().requests == 0u);
  BOOST_TEST(r.emu.connections_accepted() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(writes_and_listing)

BOOST_AUTO_TEST_CASE(v2_listing_paginates) {
  testing::emulator_options o;
  o.image_count = 25;
  running r(o);
  auto expected = r.emu.image_ids(account);
  for (std::string order : {"asc", "desc"}) {
    BOOST_TEST_CONTEXT("sort_order " << order) {
      std::vector<std::string> seen;
      std::string token;
      std::vector<std::size_t> sizes;
      for (int page = 0; page < 10; ++page) {
        std::string target = "/client/v4/accounts/" + account +
                             "/images/v2?per_page=10&sort_order=" + order +
                             (token.empty() ? "" : "&continuation_token=" + token);
        auto res = r.get(target);
        BOOST_REQUIRE_EQUAL(res.status, 200u);
        simdjson::dom::parser p;
        simdjson::dom::element doc = p.parse(res.body);
        auto images = doc["result"]["images"].get_array();
        sizes.push_back(images.size());
        for (auto img : images) {
          seen.emplace_back(std::string_view(img["id"]));
        }
        auto next = doc["result"]["continuation_token"];
        if (next.is_null()) {
          break;
        }
        token = std::string(std::string_view(next));
      }
      BOOST_TEST(sizes == (std::vector<std::size_t>{10, 10, 5}));
      if (order == "desc") {
        std::reverse(seen.begin(), seen.end());
      }
      BOOST_TEST(seen == expected);
    }
  }
  auto bad = r.get("/client/v4/accounts/" + account + "/images/v2?per_page=5");
  BOOST_TEST(bad.status == 400u);
}

BOOST_AUTO_TEST_CASE(patch_then_get_delete_then_404) {
  running r;
  auto id = r.emu.image_ids(account).front();
  auto res =
      testing::request(r.ep(), verb::patch, image_path(id), {{"Authorization", bearer}},
                       R"({"creator":"alice","metadata":{"k":"v"},"requireSignedURLs":true})");
  BOOST_TEST(res.status == 200u);
  for (const auto& body : {res.body, r.get(image_path(id)).body}) {
    BOOST_TEST(body.find(R"("creator":"alice")") != std::string::npos);
    BOOST_TEST(body.find(R"("meta":{"k":"v"})") != std::string::npos);
    BOOST_TEST(body.find(R"("requireSignedURLs":true)") != std::string::npos);
  }
  for (std::string bad :
       {R"({"creator":5})", R"({"requireSignedURLs":"yes"})", "[1]", "{", R"({"metadata":[]})"}) {
    BOOST_TEST_CONTEXT(bad) {
      res = testing::request(r.ep(), verb::patch, image_path(id), {{"Authorization", bearer}}, bad);
      BOOST_TEST(res.status == 400u);
    }
  }

  res = testing::request(r.ep(), verb::delete_, image_path(id), {{"Authorization", bearer}});
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(res.body.starts_with(R"({"result":{},"success":true)"));
  res = r.get(image_path(id));
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 5404);
  auto ids = r.emu.image_ids(account);
  BOOST_TEST((std::find(ids.begin(), ids.end(), id) == ids.end()));
  r.emu.reset();
  BOOST_TEST(r.get(image_path(id)).status == 200u);
}

BOOST_AUTO_TEST_CASE(any_image_gets_render_without_storing) {
  testing::emulator_options o;
  o.any_image_exists = true;
  running r(o);
  const auto seeded = r.emu.image_ids(account);
  for (int i = 0; i < 50; ++i) {
    auto res = r.get(image_path("fresh-" + std::to_string(i)));
    BOOST_TEST(res.status == 200u);
    BOOST_TEST(result_id(res.body) == "fresh-" + std::to_string(i));
  }
  // Rendered from the id each time: the same record, and nothing kept.
  BOOST_TEST(r.get(image_path("fresh-7")).body == r.get(image_path("fresh-7")).body);
  BOOST_TEST(r.emu.image_ids(account) == seeded);
  // A change is kept; a delete is remembered.
  auto res = testing::request(r.ep(), verb::patch, image_path("fresh-1"),
                              {{"Authorization", bearer}}, R"({"creator":"bob"})");
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(r.get(image_path("fresh-1")).body.find(R"("creator":"bob")") != std::string::npos);
  BOOST_TEST(r.emu.image_ids(account).size() == seeded.size() + 1);
  res = testing::request(r.ep(), verb::delete_, image_path("fresh-2"), {{"Authorization", bearer}});
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(r.get(image_path("fresh-2")).status == 404u);
  BOOST_TEST(r.emu.image_ids(account).size() == seeded.size() + 1);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(transport)

// The emulator writes each answer as one buffer it serialises itself; the bytes must be
// exactly what Beast's serializer would write for the same message.
BOOST_AUTO_TEST_CASE(wire_bytes_equal_beast_serialisation) {
  running r(plaintext());
  auto ep = r.plain_ep();
  auto id = r.emu.image_ids(account).front();
  const std::string tail = " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  for (const std::string& request :
       {"GET " + image_path(id) + tail + "Authorization: " + bearer + "\r\n\r\n",
        "GET " + image_path("no-such-image") + tail + "Authorization: " + bearer + "\r\n\r\n",
        "GET " + image_path(id) + tail + "Authorization: Bearer wrong\r\n\r\n",
        "GET /client/v4/nowhere" + tail + "Authorization: " + bearer + "\r\n\r\n",
        "GET /__emulator/stats" + tail + "\r\n"}) {
    BOOST_TEST_CONTEXT(request) {
      const std::string wire = testing::raw_exchange(ep, request);
      boost::beast::http::response_parser<boost::beast::http::string_body> parser;
      parser.eager(true);
      boost::system::error_code ec;
      std::size_t used = parser.put(boost::asio::buffer(wire), ec);
      BOOST_TEST(!ec, ec.message());
      BOOST_TEST(parser.is_done());
      BOOST_TEST(used == wire.size());
      std::ostringstream beast;
      beast << parser.get();
      BOOST_TEST(beast.str() == wire);
    }
  }
}

BOOST_AUTO_TEST_CASE(client_trusting_another_ca_fails_handshake) {
  running r;
  auto ep = r.ep();
  ep.ca_pem = testing::make_test_pki().ca_cert_pem;
  BOOST_CHECK_THROW(testing::connection{ep}, boost::system::system_error);
  ep = r.ep();
  ep.server_name = "example.com";  // right CA, wrong name
  BOOST_CHECK_THROW(testing::connection{ep}, boost::system::system_error);
  ep.server_name = "127.0.0.1";  // the IP SAN
  BOOST_CHECK_NO_THROW(testing::connection{ep});
}

BOOST_AUTO_TEST_CASE(plaintext_and_hostile_input) {
  running r(plaintext());
  auto ep = r.plain_ep();
  auto id = r.emu.image_ids(account).front();
  BOOST_TEST(testing::request(ep, verb::get, image_path(id), {{"Authorization", bearer}}).status ==
             200u);
  BOOST_TEST(testing::raw_exchange(ep, "GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
  std::string big_header =
      "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
  BOOST_TEST(testing::raw_exchange(ep, big_header).starts_with("HTTP/1.1 431"));
  std::string big_body = "PATCH " + image_path(id) +
                         " HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" +
                         std::string(70000, '{');
  BOOST_TEST(testing::raw_exchange(ep, big_body).starts_with("HTTP/1.1 413"));
  // Two pipelined requests on one connection, then close: two answers.
  std::string two = "GET " + image_path(id) + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer +
                    "\r\n\r\nGET " + image_path(id) +
                    " HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer +
                    "\r\nConnection: close\r\n\r\n";
  auto out = testing::raw_exchange(ep, two);
  std::size_t answers = 0;
  for (auto pos = out.find("HTTP/1.1 200"); pos != std::string::npos;
       pos = out.find("HTTP/1.1 200", pos + 1)) {
    ++answers;
  }
  BOOST_TEST(answers == 2u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Pure logic: routes, the multipart reader, the limiter, the call log (injected time).

BOOST_AUTO_TEST_SUITE(logic)

BOOST_AUTO_TEST_CASE(routes_table) {
  using testing::route_kind;
  const std::string a = "/client/v4/accounts/" + account + "/images/";
  struct row {
    std::string path;
    route_kind kind;
    std::string id;
  };
  const std::vector<row> rows = {
      {"/nowhere", route_kind::outside, ""},
      {"/client/v4/zones", route_kind::echo, ""},
      {"/client/v4/accounts", route_kind::echo, ""},
      {"/client/v4/accounts/" + account + "/workers/scripts", route_kind::echo, ""},
      {a + "v1", route_kind::images_v1, ""},
      {a + "v2", route_kind::images_v2, ""},
      {a + "v2/direct_upload", route_kind::echo, ""},
      {a + "v1/abc", route_kind::image, "abc"},
      {a + "v1/folder/sub/x", route_kind::image, "folder/sub/x"},
      {a + "v1/folder%2Fsub%2Fx", route_kind::image, "folder/sub/x"},
      {a + "v1/folder%2fsub/x", route_kind::image, "folder/sub/x"},
      {a + "v1/a%20b", route_kind::image, "a b"},
      {a + "v1/abc/blob", route_kind::blob, "abc"},
      {a + "v1/folder/sub/x/blob", route_kind::blob, "folder/sub/x"},
      {a + "v1/folder%2Fsub%2Fx%2Fblob", route_kind::blob, "folder/sub/x"},
      {a + "v1/blob", route_kind::image, "blob"},
      {a + "v1/keys", route_kind::keys, ""},
      {a + "v1/%6Beys", route_kind::keys, ""},
      {a + "v1/keys/mykey", route_kind::echo, ""},
      {a + "v1/stats", route_kind::stats, ""},
      {a + "v1/stats/x", route_kind::no_route, ""},
      {a + "v1/variants", route_kind::variants, ""},
      {a + "v1/variants/public", route_kind::variant, "public"},
      {a + "v1/variants%2Fpublic", route_kind::variant, "public"},
      {a + "v1/variants/a/b", route_kind::no_route, ""},
      {a + "v1/", route_kind::no_route, ""},
      {a + "v1/a/", route_kind::no_route, ""},
      {a + "v1/a//b", route_kind::no_route, ""},
      {a + "v1/%zz", route_kind::bad_id, ""},
      {a + "v1/%4", route_kind::bad_id, ""},
  };
  for (const auto& r : rows) {
    BOOST_TEST_CONTEXT(r.path) {
      auto got = testing::parse_route(r.path);
      BOOST_TEST(static_cast<int>(got.kind) == static_cast<int>(r.kind));
      BOOST_TEST(got.id == r.id);
      const bool accounted = r.path.starts_with("/client/v4/accounts/0");
      BOOST_TEST(got.account == (accounted ? account : std::string()));
    }
  }
}

// One form read in two pieces split at every offset, and byte by byte: the same result.
BOOST_AUTO_TEST_CASE(multipart_reader_any_split) {
  const std::string file = tricky_bytes(700);
  const std::string body = "preamble to ignore\r\n" +
                           multipart({{"metadata", R"({"k":"v"})", "", ""},
                                      {"file", file, "a \"b\".png", "image/png"},
                                      {"requireSignedURLs", "false", "", ""},
                                      {"other", tricky_bytes(300, 9), "", ""},
                                      {"id", "folder/sub/x", "", ""}}) +
                           "epilogue\r\n--" + boundary + "\r\nignored too";
  const std::string expected_sha = testing::sha256::of(file);
  auto check = [&](const testing::upload_form& f) {
    BOOST_TEST(!f.error.has_value(), f.error.value_or(""));
    BOOST_TEST(f.has_file);
    BOOST_TEST(f.file_bytes == file.size());
    BOOST_TEST(f.file_sha256 == expected_sha);
    BOOST_TEST(f.file_name == "a \"b\".png");
    BOOST_TEST(f.file_content_type == "image/png");
    BOOST_TEST(f.fields.at("metadata") == R"({"k":"v"})");
    BOOST_TEST(f.fields.at("requireSignedURLs") == "false");
    BOOST_TEST(f.fields.at("id") == "folder/sub/x");
    BOOST_TEST(f.ignored == std::vector<std::string>{"other"});
  };
  // The escaped quote in the filename must survive: build that part by hand.
  std::string quoted = body;
  auto pos = quoted.find("filename=\"a \"b\".png\"");
  BOOST_REQUIRE(pos != std::string::npos);
  quoted.replace(pos, 20, "filename=\"a \\\"b\\\".png\"");
  for (std::size_t cut = 0; cut <= quoted.size(); cut += 1) {
    testing::multipart_reader r(boundary);
    r.feed(std::string_view(quoted).substr(0, cut));
    r.feed(std::string_view(quoted).substr(cut));
    r.finish();
    BOOST_TEST_CONTEXT("cut at " << cut) { check(r.form()); }
    if (r.form().error) {
      break;
    }
  }
  testing::multipart_reader bytewise(boundary);
  for (char c : quoted) {
    bytewise.feed(std::string_view(&c, 1));
    BOOST_TEST(bytewise.held() < 16 * 1024u);
  }
  bytewise.finish();
  check(bytewise.form());
}

BOOST_AUTO_TEST_CASE(multipart_reader_refuses_malformed_bodies) {
  const std::string ok = multipart({{"file", "abc", "f.png", "image/png"}});
  const std::string delim = "--" + boundary;
  struct row {
    std::string what;
    std::string body;
  };
  const std::vector<row> rows = {
      {"no closing delimiter", ok.substr(0, ok.size() - 4)},
      {"empty body", ""},
      {"no delimiter at all", "just some bytes"},
      {"part without headers", delim + "\r\n\r\nabc\r\n" + delim + "--"},
      {"part without a name",
       delim + "\r\nContent-Disposition: form-data\r\n\r\nx\r\n" + delim + "--"},
      {"not form-data",
       delim + "\r\nContent-Disposition: attachment; name=\"file\"\r\n\r\nx\r\n" + delim + "--"},
      {"header line without a colon", delim + "\r\nbogus\r\n\r\nx\r\n" + delim + "--"},
      {"unterminated quote",
       delim + "\r\nContent-Disposition: form-data; name=\"file\r\n\r\nx\r\n" + delim + "--"},
      {"garbage after the delimiter", delim + "xx\r\n"},
      {"header block too large", delim + "\r\nContent-Disposition: form-data; name=\"id\"\r\nX: " +
                                     std::string(9000, 'a') + "\r\n\r\nx\r\n" + delim + "--"},
      {"field too large", multipart({{"metadata", std::string(9000, 'm'), "", ""}})},
      {"two file parts", multipart({{"file", "a", "a", ""}, {"file", "b", "b", ""}})},
      {"duplicate field", multipart({{"id", "a", "", ""}, {"id", "b", "", ""}})},
  };
  for (const auto& r : rows) {
    BOOST_TEST_CONTEXT(r.what) {
      testing::multipart_reader reader(boundary);
      reader.feed(r.body);
      reader.finish();
      BOOST_TEST(reader.form().error.has_value());
      BOOST_TEST(reader.held() < 16 * 1024u);
    }
  }
  // Transport padding after a delimiter is allowed (RFC 2046 §5.1.1).
  testing::multipart_reader padded(boundary);
  padded.feed(delim + "  \t\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\n" +
              "https://x/y\r\n" + delim + "-- \r\n");
  padded.finish();
  BOOST_TEST(!padded.form().error.has_value());
  BOOST_TEST(padded.form().fields.at("url") == "https://x/y");
}

BOOST_AUTO_TEST_CASE(multipart_boundary_from_content_type) {
  using testing::multipart_boundary;
  BOOST_TEST(multipart_boundary("multipart/form-data; boundary=abc").value_or("") == "abc");
  BOOST_TEST(multipart_boundary("Multipart/Form-Data;boundary=\"a b:c\"").value_or("") == "a b:c");
  BOOST_TEST(multipart_boundary("multipart/form-data; charset=utf-8; BOUNDARY=x").value_or("") ==
             "x");
  BOOST_TEST(!multipart_boundary("multipart/form-data").has_value());
  BOOST_TEST(!multipart_boundary("multipart/form-data; boundary=").has_value());
  BOOST_TEST(!multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')));
  BOOST_TEST(!multipart_boundary("multipart/mixed; boundary=abc").has_value());
  BOOST_TEST(!multipart_boundary("image/png").has_value());
}

// Calls at injected times (ms) and the verdicts they get.
BOOST_AUTO_TEST_CASE(sliding_window_limiter_with_lockout) {
  using ms = std::chrono::milliseconds;
  testing::rate_limiter lim({testing::limiter_mode::sliding_window, 3, ms(1000), ms(5000)});
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  struct row {
    int at_ms;
    bool limited;
    bool tripped;
    std::uint64_t remaining;
    std::uint64_t reset_s;
  };
  const std::vector<row> rows = {
      {0, false, false, 2, 1},    {100, false, false, 1, 1}, {200, false, false, 0, 1},
      {300, true, true, 0, 5},     // the 4th call inside one second: trip, blocked 5 s
      {1500, true, false, 0, 4},   // still blocked although the window has emptied
      {5299, true, false, 0, 1},   //
      {5300, false, false, 2, 1},  // the block has ended; the window is empty
      {5301, false, false, 1, 1},  //
      {6200, false, false, 0, 1},  // calls at 5300, 5301, 6200: three in a second
      {6250, true, true, 0, 5},    // a fourth: blocked again
  };
  for (const auto& r : rows) {
    BOOST_TEST_CONTEXT("call at " << r.at_ms << " ms") {
      auto v = lim.consume("Bearer t", t0 + ms(r.at_ms));
      BOOST_TEST(v.limited == r.limited);
      BOOST_TEST(v.tripped_now == r.tripped);
      BOOST_TEST(v.remaining == r.remaining);
      BOOST_TEST(v.reset_seconds == r.reset_s);
    }
  }
  // Another credential has its own window.
  BOOST_TEST(!lim.consume("Bearer other", t0 + ms(6251)).limited);
}

// The case the sliding window exists for: a fixed window lets 2N calls through around its
// edge; the sliding one never more than N in any interval of the window's length.
BOOST_AUTO_TEST_CASE(fixed_window_bursts_at_its_edge_sliding_does_not) {
  using ms = std::chrono::milliseconds;
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  const std::vector<int> times = {0, 990, 1000, 1010};
  for (auto mode : {testing::limiter_mode::fixed_window, testing::limiter_mode::sliding_window}) {
    testing::rate_limiter lim({mode, 2, ms(1000), ms(0)});
    std::vector<bool> limited;
    for (int t : times) {
      limited.push_back(lim.consume("k", t0 + ms(t)).limited);
    }
    if (mode == testing::limiter_mode::fixed_window) {
      BOOST_TEST(limited == (std::vector<bool>{false, false, false, false}));
    } else {
      BOOST_TEST(limited == (std::vector<bool>{false, false, false, true}));
      // Without a block only the calls over the limit are refused; Retry-After says when
      // the oldest call leaves the window (990 + 1000 - 1010 ms: 1 s).
      auto v = lim.consume("k", t0 + ms(1989));
      BOOST_TEST(v.limited);
      BOOST_TEST(v.reset_seconds == 1u);
      BOOST_TEST(!lim.consume("k", t0 + ms(1990)).limited);
    }
  }
}

BOOST_AUTO_TEST_CASE(limiter_forgets_idle_credentials) {
  using ms = std::chrono::milliseconds;
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  testing::rate_limiter lim({testing::limiter_mode::sliding_window, 1, ms(10), ms(1000)});
  lim.consume("blocked", t0);
  BOOST_TEST(lim.consume("blocked", t0).limited);  // trips: blocked for a second
  for (int i = 0; i < 25000; ++i) {
    lim.consume("made-up-" + std::to_string(i), t0 + ms(20 + i / 100));
  }
  BOOST_TEST(lim.keys() < 25000u);
  // The blocked credential was never forgotten.
  BOOST_TEST(lim.consume("blocked", t0 + ms(500)).limited);
}

BOOST_AUTO_TEST_CASE(call_log_keeps_the_newest) {
  testing::call_log log(3);
  for (int i = 1; i <= 5; ++i) {
    log.add({std::chrono::microseconds(i * 1000), i == 4});
  }
  auto all = log.since(std::chrono::microseconds(-1));
  BOOST_REQUIRE_EQUAL(all.size(), 3u);
  BOOST_TEST(all[0].at.count() == 3000);
  BOOST_TEST(all[1].limited);
  BOOST_TEST(all[2].at.count() == 5000);
  BOOST_TEST(log.total() == 5u);
  BOOST_TEST(log.dropped() == 2u);
  BOOST_TEST(log.since(std::chrono::microseconds(4000)).size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Uploads through real sockets.

BOOST_AUTO_TEST_SUITE(uploads)

// 10 MiB through TLS: the bytes that arrived are exactly the bytes sent (SHA-256), and the
// emulator never held more than a small window of them.
BOOST_AUTO_TEST_CASE(ten_mib_upload_arrives_exactly_and_is_not_held) {
  running r;
  const std::string file = tricky_bytes(10 * 1024 * 1024, 11);
  const std::string body = multipart({{"id", "folder/sub/big.png", "", ""},
                                      {"metadata", R"({"owner":"tests","n":1})", "", ""},
                                      {"requireSignedURLs", "false", "", ""},
                                      {"file", file, "big.png", "image/png"}});
  auto res = testing::request(r.ep(60s), verb::post, uploads_path(), form_headers(), body);
  BOOST_TEST(res.status == 200u, res.body.substr(0, 300));
  simdjson::dom::parser p;
  auto doc = parse(p, res.body);
  BOOST_TEST(bool(doc["success"]));
  BOOST_TEST(std::string_view(doc["result"]["id"]) == "folder/sub/big.png");
  BOOST_TEST(std::string_view(doc["result"]["filename"]) == "big.png");
  BOOST_TEST(std::string_view(doc["result"]["meta"]["owner"]) == "tests");
  BOOST_TEST(!bool(doc["result"]["requireSignedURLs"]));
  BOOST_TEST(std::string_view(doc["result"]["uploaded"]).ends_with("Z"));

  auto rec = r.emu.upload_of("folder/sub/big.png");
  BOOST_REQUIRE(rec.has_value());
  BOOST_TEST(rec->file_bytes == file.size());
  BOOST_TEST(rec->file_sha256 == testing::sha256::of(file));
  BOOST_TEST(rec->body_bytes == body.size());
  BOOST_TEST(rec->file_content_type == "image/png");
  BOOST_TEST(rec->account == account);
  BOOST_TEST(!rec->from_url);

  auto s = r.emu.snapshot();
  BOOST_TEST(s.uploads == 1u);
  BOOST_TEST(s.by_method["POST"] == 1u);
  BOOST_TEST(s.max_request_buffer > 0u);
  BOOST_TEST(s.max_request_buffer < 512 * 1024u);

  // The new image is there, by either spelling of its id, and in the listing.
  auto got = r.get(image_path("folder/sub/big.png"));
  BOOST_TEST(got.status == 200u);
  BOOST_TEST(result_id(got.body) == "folder/sub/big.png");
  BOOST_TEST(r.get(image_path("folder%2Fsub%2Fbig.png")).body.find(R"("owner":"tests")") !=
             std::string::npos);
  BOOST_TEST(r.emu.image_ids(account).size() == 101u);

  // The control endpoint reports the same record.
  auto ctl = testing::request(r.ep(), verb::get, "/__emulator/uploads");
  simdjson::dom::parser p2;
  auto u = parse(p2, ctl.body)["uploads"].at(0);
  BOOST_TEST(std::string_view(u["file_sha256"]) == rec->file_sha256);
  BOOST_TEST(std::uint64_t(u["file_bytes"]) == file.size());
}

// A client that generates its upload as it sends it (plain HTTP): the process grows by far
// less than the body, so the emulator cannot have kept it.
BOOST_AUTO_TEST_CASE(streamed_upload_keeps_memory_flat) {
  testing::emulator_options o = plaintext();
  o.upload_limit = 80 * 1024 * 1024;
  running r(o);
  const std::size_t file_size = 64 * 1024 * 1024;
  const std::string head_part = "--" + boundary +
                                "\r\nContent-Disposition: form-data; name=\"file\"; "
                                "filename=\"stream.bin\"\r\n\r\n";
  const std::string tail_part = "\r\n--" + boundary + "--\r\n";
  const std::size_t length = head_part.size() + file_size + tail_part.size();

  const std::size_t rss_before = rss_bytes();
  asio::io_context ioc;
  asio::ip::tcp::socket sock(ioc);
  sock.connect({asio::ip::make_address("127.0.0.1"), r.emu.port()});
  const std::string head = "POST " + uploads_path() +
                           " HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer +
                           "\r\nContent-Type: multipart/form-data; boundary=" + boundary +
                           "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  asio::write(sock, asio::buffer(head + head_part));
  testing::sha256 expected;
  std::size_t rss_peak = rss_bytes();
  std::string piece;
  for (std::size_t sent = 0; sent < file_size;) {
    tricky_fill(piece, std::min<std::size_t>(256 * 1024, file_size - sent), sent);
    expected.update(piece);
    asio::write(sock, asio::buffer(piece));
    sent += piece.size();
    rss_peak = std::max(rss_peak, rss_bytes());
  }
  asio::write(sock, asio::buffer(tail_part));
  boost::beast::flat_buffer buf;
  boost::beast::http::response<boost::beast::http::string_body> res;
  boost::beast::http::read(sock, buf, res);
  rss_peak = std::max(rss_peak, rss_bytes());
  BOOST_TEST(res.result_int() == 200u, res.body());
  const std::string id = result_id(res.body());
  BOOST_TEST(id.size() == 36u);  // a generated, UUID-like id
  auto rec = r.emu.upload_of(id);
  BOOST_REQUIRE(rec.has_value());
  BOOST_TEST(rec->file_bytes == file_size);
  BOOST_TEST(rec->file_sha256 == expected.hex_digest());
  BOOST_TEST(rec->file_name == "stream.bin");
  BOOST_TEST(r.emu.snapshot().max_request_buffer < 512 * 1024u);
  BOOST_TEST_MESSAGE("RSS growth during a "
                     << file_size << "-byte upload: " << (rss_peak - rss_before) << " bytes");
  BOOST_TEST(rss_peak - rss_before < file_size / 4);
}

BOOST_AUTO_TEST_CASE(over_the_limit_is_413) {
  testing::emulator_options o = plaintext();
  o.upload_limit = 1024 * 1024;
  running r(o);
  auto ep = r.plain_ep();
  // Over the limit but within what is read and discarded: a clean 413 on a live connection.
  testing::connection c(ep);
  auto res = c.request(verb::post, uploads_path(), form_headers(),
                       multipart({{"file", std::string(1536 * 1024, 'x'), "a.png", ""}}));
  BOOST_TEST(res.status == 413u);
  BOOST_TEST(error_code_of(res.body) == 5413);
  BOOST_TEST(c.is_open());
  res = c.request(verb::get, image_path(r.emu.image_ids(account).front()),
                  {{"Authorization", bearer}});
  BOOST_TEST(res.status == 200u);
  // An echoed request body obeys the same limit.
  res = c.request(verb::put, "/client/v4/zones/z", {{"Authorization", bearer}},
                  std::string(1536 * 1024, 'y'));
  BOOST_TEST(res.status == 413u);
  BOOST_TEST(r.emu.snapshot().by_status[413] == 2u);
  BOOST_TEST(r.emu.uploads().empty());

  // Declared far over the limit: refused before any of it is read, then closed.
  const std::string huge = "POST " + uploads_path() +
                           " HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                           "boundary=b\r\nContent-Length: 999999999\r\n\r\n";
  auto out = testing::raw_exchange(ep, huge);
  BOOST_TEST(out.starts_with("HTTP/1.1 413"));
  BOOST_TEST(out.find("Connection: close") != std::string::npos);
  // Chunked past the read limit: refused once it passes, then closed.
  std::string chunked = "POST /client/v4/zones HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer +
                        "\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string piece(512 * 1024, 'z');
  for (int i = 0; i < 9; ++i) {  // 4.5 MiB: past the 4 MiB read limit
    chunked += "80000\r\n" + piece + "\r\n";
  }
  out = testing::raw_exchange(ep, chunked + "0\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 413"));
}

BOOST_AUTO_TEST_CASE(expect_100_continue) {
  running r(plaintext());
  auto ep = r.plain_ep();
  const std::string body = multipart({{"file", "tiny", "t.png", "image/png"}});
  const std::string head = "POST " + uploads_path() +
                           " HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer +
                           "\r\nContent-Type: multipart/form-data; boundary=" + boundary +
                           "\r\nExpect: 100-continue\r\nConnection: close\r\n";
  auto out = testing::raw_exchange(
      ep, head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  BOOST_TEST(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), out);
  // Over the limit: 413 at once, no 100 Continue, the body never asked for.
  out = testing::raw_exchange(ep, head + "Content-Length: 99999999999\r\n\r\n");
  BOOST_TEST(out.starts_with("HTTP/1.1 413"), out);
}

BOOST_AUTO_TEST_CASE(upload_errors) {
  testing::emulator_options o;
  o.custom_ids = {"taken/id.png"};
  running r(o);
  auto post = [&](const std::string& body, testing::header_list h = form_headers()) {
    return testing::request(r.ep(), verb::post, uploads_path(), std::move(h), body);
  };
  struct row {
    std::string what;
    std::string body;
    unsigned status;
    std::int64_t code;
  };
  const form_part file{"file", "png bytes", "a.png", "image/png"};
  const std::vector<row> rows = {
      {"no closing delimiter", multipart({file}).substr(0, 60), 400, 5400},
      {"file and url", multipart({file, {"url", "https://e.com/a.png", "", ""}}), 400, 5400},
      {"neither file nor url", multipart({{"metadata", "{}", "", ""}}), 400, 5400},
      {"metadata not an object", multipart({file, {"metadata", "[1]", "", ""}}), 400, 5400},
      {"metadata over 1 KiB",
       multipart({file, {"metadata", R"({"k":")" + std::string(1100, 'v') + R"("})", "", ""}}), 400,
       5400},
      {"requireSignedURLs not a bool", multipart({file, {"requireSignedURLs", "yes", "", ""}}), 400,
       5400},
      {"url not http", multipart({{"url", "ftp://e.com/a.png", "", ""}}), 400, 5400},
      {"reserved id", multipart({file, {"id", "variants/x", "", ""}}), 400, 5400},
      {"blob id", multipart({file, {"id", "a/blob", "", ""}}), 400, 5400},
      {"id with a trailing slash", multipart({file, {"id", "a/", "", ""}}), 400, 5400},
      {"custom id and signed URLs",
       multipart({file, {"id", "new-id", "", ""}, {"requireSignedURLs", "true", "", ""}}), 400,
       5400},
      {"custom id taken", multipart({file, {"id", "taken/id.png", "", ""}}), 409, 5409},
  };
  for (const auto& row : rows) {
    BOOST_TEST_CONTEXT(row.what) {
      auto res = post(row.body);
      BOOST_TEST(res.status == row.status, res.body);
      BOOST_TEST(error_code_of(res.body) == row.code);
    }
  }
  auto res = post("raw image bytes", {{"Authorization", bearer}, {"Content-Type", "image/png"}});
  BOOST_TEST(res.status == 415u);
  BOOST_TEST(error_code_of(res.body) == 5415);
  res =
      post(multipart({file}), {{"Authorization", bearer}, {"Content-Type", "multipart/form-data"}});
  BOOST_TEST(res.status == 400u);
  BOOST_TEST(error_code_of(res.body) == 5400);
  res = post(multipart({file}), {{"Authorization", "Bearer nope"},
                                 {"Content-Type", "multipart/form-data; boundary=" + boundary}});
  BOOST_TEST(res.status == 403u);
  BOOST_TEST(r.emu.uploads().empty());
  BOOST_TEST(r.emu.image_ids(account).size() == 101u);
  // Every refused upload was still an API call.
  BOOST_TEST(r.emu.snapshot().by_method["POST"] == rows.size() + 3);
}

BOOST_AUTO_TEST_CASE(url_upload_generated_ids_and_reupload_after_delete) {
  running r;
  auto post = [&](const std::vector<form_part>& parts) {
    return testing::request(r.ep(), verb::post, uploads_path(), form_headers(), multipart(parts));
  };
  auto res = post({{"url", "https://example.com/path/cat.jpeg?size=2", "", ""},
                   {"requireSignedURLs", "true", "", ""}});
  BOOST_TEST(res.status == 200u, res.body);
  simdjson::dom::parser p;
  auto img = parse(p, res.body)["result"];
  const std::string id{std::string_view(img["id"])};
  BOOST_TEST(id.size() == 36u);
  BOOST_TEST(std::string_view(img["filename"]) == "cat.jpeg");
  BOOST_TEST(bool(img["requireSignedURLs"]));
  auto rec = r.emu.upload_of(id);
  BOOST_REQUIRE(rec.has_value());
  BOOST_TEST(rec->from_url);
  BOOST_TEST(rec->url == "https://example.com/path/cat.jpeg?size=2");
  BOOST_TEST(rec->file_bytes == 0u);
  // Another generated id for another upload.
  res = post({{"file", "x", "", ""}});
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(result_id(res.body) != id);
  BOOST_TEST(result_id(res.body).size() == 36u);
  // A custom id can be uploaded again once deleted.
  BOOST_TEST(post({{"file", "v1", "a.png", ""}, {"id", "again.png", "", ""}}).status == 200u);
  BOOST_TEST(post({{"file", "v2", "a.png", ""}, {"id", "again.png", "", ""}}).status == 409u);
  BOOST_TEST(
      testing::request(r.ep(), verb::delete_, image_path("again.png"), {{"Authorization", bearer}})
          .status == 200u);
  BOOST_TEST(post({{"file", "v3", "a.png", ""}, {"id", "again.png", "", ""}}).status == 200u);
  BOOST_TEST(r.emu.uploads().size() == 4u);
  BOOST_TEST(r.emu.upload_of("again.png")->file_sha256 == testing::sha256::of("v3"));
  r.emu.reset();
  BOOST_TEST(r.emu.uploads().empty());
  BOOST_TEST(r.get(image_path("again.png")).status == 404u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Routes besides image details, through real sockets.

BOOST_AUTO_TEST_SUITE(routes)

// The TypeScript <= v6, Python and Go SDKs send a custom id raw; v7 sends it %2F-encoded.
// Both address the same image, for GET, PATCH and DELETE alike.
BOOST_AUTO_TEST_CASE(raw_segment_ids_equal_percent_encoded_ids) {
  testing::emulator_options o;
  o.custom_ids = {"folder/sub/x", "logos/acme corp.png"};
  running r(o);
  BOOST_TEST(r.emu.image_ids(account).size() == 102u);
  const auto raw = r.get(image_path("folder/sub/x"));
  const auto encoded = r.get(image_path("folder%2Fsub%2Fx"));
  const auto mixed = r.get(image_path("folder%2fsub/x"));
  BOOST_TEST(raw.status == 200u);
  BOOST_TEST(result_id(raw.body) == "folder/sub/x");
  BOOST_TEST(encoded.body == raw.body);
  BOOST_TEST(mixed.body == raw.body);
  BOOST_TEST(r.emu.requests_for("folder/sub/x") == 3u);
  BOOST_TEST(result_id(r.get(image_path("logos/acme%20corp.png")).body) == "logos/acme corp.png");

  auto res = testing::request(r.ep(), verb::patch, image_path("folder/sub/x"),
                              {{"Authorization", bearer}, {"Content-Type", "application/json"}},
                              R"({"creator":"raw-client","metadata":{"via":"raw"}})");
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(result_id(res.body) == "folder/sub/x");
  BOOST_TEST(r.get(image_path("folder%2Fsub%2Fx")).body.find(R"("creator":"raw-client")") !=
             std::string::npos);
  res = testing::request(r.ep(), verb::delete_, image_path("folder%2Fsub%2Fx"),
                         {{"Authorization", bearer}});
  BOOST_TEST(res.status == 200u);
  res = r.get(image_path("folder/sub/x"));
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 5404);
  auto s = r.emu.snapshot();
  BOOST_TEST(s.by_method["GET"] == 6u);
  BOOST_TEST(s.by_method["PATCH"] == 1u);
  BOOST_TEST(s.by_method["DELETE"] == 1u);
}

// keys, stats, variants[/…] and …/blob are never ids, whichever way they are spelled.
BOOST_AUTO_TEST_CASE(reserved_names_and_sibling_routes) {
  testing::emulator_options o;
  o.custom_ids = {"folder/sub/x"};
  running r(o);
  simdjson::dom::parser p;

  auto res = r.get(image_path("stats"));
  BOOST_TEST(res.status == 200u);
  auto count = parse(p, res.body)["result"]["count"];
  BOOST_TEST(std::uint64_t(count["allowed"]) == 100000u);
  BOOST_TEST(std::uint64_t(count["current"]) == 101u);

  for (std::string keys : {"keys", "%6Beys"}) {
    res = r.get(image_path(keys));
    BOOST_TEST(res.status == 200u);
    auto key = parse(p, res.body)["result"]["keys"].at(0);
    BOOST_TEST(std::string_view(key["name"]) == "default");
    BOOST_TEST(std::string_view(key["value"]).size() == 44u);
  }

  res = r.get(image_path("variants"));
  BOOST_TEST(res.status == 200u);
  auto variants = parse(p, res.body)["result"]["variants"];
  for (const char* v : {"public", "thumbnail", "hero"}) {
    BOOST_TEST(std::string_view(variants[v]["id"]) == v);
    BOOST_TEST(std::uint64_t(variants[v]["options"]["width"]) > 0u);
  }
  res = r.get(image_path("variants/thumbnail"));
  BOOST_TEST(std::string_view(parse(p, res.body)["result"]["variant"]["id"]) == "thumbnail");
  res = r.get(image_path("variants%2Fpublic"));
  BOOST_TEST(res.status == 200u);
  res = r.get(image_path("variants/nope"));
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 5401);
  for (std::string none : {"stats/x", "variants/a/b"}) {
    res = r.get(image_path(none));
    BOOST_TEST(res.status == 404u);
    BOOST_TEST(error_code_of(res.body) == 7000);
  }

  for (std::string blob :
       {"folder/sub/x/blob", "folder%2Fsub%2Fx%2Fblob", "folder%2Fsub%2Fx/blob"}) {
    BOOST_TEST_CONTEXT(blob) {
      res = r.get(image_path(blob));
      BOOST_TEST(res.status == 200u);
      BOOST_TEST(res.header("content-type") == "image/png");
      BOOST_TEST(res.body.starts_with("\x89PNG\r\n\x1a\n"));
      BOOST_TEST(res.body.size() == 68u);
      BOOST_TEST(res.count("set-cookie") == 4u);  // still an API answer
    }
  }
  res = r.get(image_path("no-such-image/blob"));
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 5404);
  // None of these counted as a request for an image called like the reserved name.
  BOOST_TEST(r.emu.requests_for("stats") == 0u);
  BOOST_TEST(r.emu.requests_for("keys") == 0u);
  BOOST_TEST(r.emu.requests_for("folder/sub/x") == 3u);

  // Writes on the siblings are not emulated: variants stand in with the echo, the rest 405.
  res = testing::request(r.ep(), verb::post, image_path("variants"), {{"Authorization", bearer}},
                         R"({"id":"small"})");
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(std::string_view(parse(p, res.body)["result"]["method"]) == "POST");
  res = testing::request(r.ep(), verb::delete_, image_path("stats"), {{"Authorization", bearer}});
  BOOST_TEST(res.status == 405u);
  res =
      testing::request(r.ep(), verb::put, image_path("folder/sub/x"), {{"Authorization", bearer}});
  BOOST_TEST(res.status == 405u);
}

// Every other path under /client/v4/ answers what arrived, so a forwarding gateway can be
// checked for method, path, query, body bytes and the header names it sent.
BOOST_AUTO_TEST_CASE(echo_describes_what_arrived) {
  testing::emulator_options o;
  o.rate_limit = 6;
  running r(o);
  simdjson::dom::parser p;

  auto res = testing::request(r.ep(), verb::get, "/client/v4/zones?name=example.com&page=2",
                              {{"Authorization", bearer}, {"X-Custom", "1"}});
  BOOST_TEST(res.status == 200u);
  BOOST_TEST(res.header("content-type") == "application/json");
  BOOST_TEST(res.count("set-cookie") == 4u);
  auto e = parse(p, res.body)["result"];
  BOOST_TEST(std::string_view(e["method"]) == "GET");
  BOOST_TEST(std::string_view(e["path"]) == "/client/v4/zones");
  BOOST_TEST(std::string_view(e["query"]) == "name=example.com&page=2");
  BOOST_TEST(std::uint64_t(e["body_bytes"]) == 0u);
  BOOST_TEST(std::string_view(e["body_sha256"]) == testing::sha256::of(""));
  std::vector<std::string> names;
  for (auto n : e["headers"].get_array()) {
    names.emplace_back(std::string_view(n));
  }
  BOOST_TEST((std::find(names.begin(), names.end(), "authorization") != names.end()));
  BOOST_TEST((std::find(names.begin(), names.end(), "x-custom") != names.end()));
  BOOST_TEST((std::find(names.begin(), names.end(), "host") != names.end()));
  BOOST_TEST(res.body.find("emulator-token") == std::string::npos);  // names, never values

  const std::string script = tricky_bytes(300 * 1024, 3);
  for (auto method : {verb::put, verb::post, verb::patch, verb::delete_}) {
    BOOST_TEST_CONTEXT(boost::beast::http::to_string(method)) {
      res = testing::request(
          r.ep(), method, "/client/v4/accounts/" + account + "/workers/scripts/hello",
          {{"Authorization", bearer}, {"Content-Type", "application/javascript"}}, script);
      BOOST_TEST(res.status == 200u);
      e = parse(p, res.body)["result"];
      BOOST_TEST(std::string_view(e["method"]) == boost::beast::http::to_string(method));
      BOOST_TEST(std::uint64_t(e["body_bytes"]) == script.size());
      BOOST_TEST(std::string_view(e["body_sha256"]) == testing::sha256::of(script));
      BOOST_TEST(std::string_view(e["content_type"]) == "application/javascript");
    }
  }
  // Accounts are checked like on image routes; the credential too.
  res = r.get("/client/v4/accounts/ffffffffffffffffffffffffffffffff/workers/scripts");
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 7003);
  auto s = r.emu.snapshot();
  BOOST_TEST(s.requests == 6u);
  BOOST_TEST(s.by_method["GET"] == 2u);
  BOOST_TEST(s.by_method["PUT"] == 1u);
  BOOST_TEST(s.by_method["DELETE"] == 1u);
  // ...and they count against the same limit (6 per window).
  res = r.get("/client/v4/user/tokens/verify");
  BOOST_TEST(res.status == 429u);
  BOOST_TEST(error_code_of(res.body) == 971);
  BOOST_TEST(r.emu.requests_with("emulator-token") == 7u);
}

BOOST_AUTO_TEST_CASE(deprecated_v1_listing_pages) {
  testing::emulator_options o;
  o.image_count = 25;
  running r(o);
  const auto expected = r.emu.image_ids(account);
  std::vector<std::string> seen;
  std::vector<std::size_t> sizes;
  for (int page = 1; page <= 4; ++page) {
    auto res = r.get(uploads_path() + "?page=" + std::to_string(page) + "&per_page=10");
    BOOST_REQUIRE_EQUAL(res.status, 200u);
    simdjson::dom::parser p;
    auto images = parse(p, res.body)["result"]["images"].get_array();
    sizes.push_back(images.size());
    for (auto img : images) {
      seen.emplace_back(std::string_view(img["id"]));
    }
  }
  BOOST_TEST(sizes == (std::vector<std::size_t>{10, 10, 5, 0}));
  BOOST_TEST(seen == expected);
  // Default page size 1000: everything at once.
  simdjson::dom::parser p;
  BOOST_TEST(parse(p, r.get(uploads_path()).body)["result"]["images"].get_array().size() == 25u);
  // creator="" lists the images without a creator.
  auto res = r.get(uploads_path() + "?creator=");
  for (auto img : parse(p, res.body)["result"]["images"].get_array()) {
    BOOST_TEST(img["creator"].is_null());
  }
  for (std::string bad : {"?per_page=5", "?per_page=10001", "?page=0", "?page=x"}) {
    BOOST_TEST_CONTEXT(bad) {
      res = r.get(uploads_path() + bad);
      BOOST_TEST(res.status == 400u);
      BOOST_TEST(error_code_of(res.body) == 5400);
    }
  }
  res = testing::request(r.ep(), verb::delete_, uploads_path(), {{"Authorization", bearer}});
  BOOST_TEST(res.status == 405u);
}

// Warming reads the v2 listing: 10,000 images page by page, with images deleted between
// pages (the token stays valid and nothing is skipped or repeated), and in one page of 10,000.
BOOST_AUTO_TEST_CASE(v2_listing_scales_to_10000_images) {
  testing::emulator_options o;
  o.image_count = 10000;
  running r(o);
  const auto all = r.emu.image_ids(account);
  BOOST_REQUIRE_EQUAL(all.size(), 10000u);
  const std::string v2 = "/client/v4/accounts/" + account + "/images/v2";

  auto res = r.get(v2 + "?per_page=10000");
  BOOST_REQUIRE_EQUAL(res.status, 200u);
  simdjson::dom::parser p;
  auto doc = parse(p, res.body);
  BOOST_TEST(doc["result"]["images"].get_array().size() == 10000u);
  BOOST_TEST(doc["result"]["continuation_token"].is_null());

  std::vector<std::string> seen;
  std::set<std::string> deleted;
  std::string token;
  for (int page = 0; page < 20; ++page) {
    res = r.get(v2 + "?per_page=1000&sort_order=asc" +
                (token.empty() ? "" : "&continuation_token=" + token));
    BOOST_REQUIRE_EQUAL(res.status, 200u);
    doc = parse(p, res.body);
    for (auto img : doc["result"]["images"].get_array()) {
      seen.emplace_back(std::string_view(img["id"]));
    }
    auto next = doc["result"]["continuation_token"];
    if (next.is_null()) {
      break;
    }
    token = std::string(std::string_view(next));
    BOOST_TEST(token.size() == 32u);
    BOOST_TEST(token.find_first_not_of("0123456789abcdef") == std::string::npos);
    // Delete the page's last image (the token's anchor) and the first of the next page.
    const std::string last = seen.back();
    auto it = std::upper_bound(all.begin(), all.end(), last);
    for (const std::string& id : {last, it == all.end() ? last : *it}) {
      if (deleted.insert(id).second) {
        BOOST_TEST(
            testing::request(r.ep(), verb::delete_, image_path(id), {{"Authorization", bearer}})
                .status == 200u);
      }
    }
  }
  std::vector<std::string> expected;
  for (const auto& id : all) {
    // Everything but the images deleted before their page was read.
    if (!deleted.contains(id) || std::find(seen.begin(), seen.end(), id) != seen.end()) {
      expected.push_back(id);
    }
  }
  BOOST_TEST(seen.size() == expected.size());
  BOOST_TEST(seen == expected);
  BOOST_TEST(seen.size() == 10000u - 9u);

  // The same page gives the same token; a made-up or mismatched token is a 400.
  auto first = r.get(v2 + "?per_page=100");
  auto again = r.get(v2 + "?per_page=100");
  simdjson::dom::parser p1, p2;
  BOOST_TEST(std::string_view(parse(p1, first.body)["result"]["continuation_token"]) ==
             std::string_view(parse(p2, again.body)["result"]["continuation_token"]));
  const std::string asc_token(
      std::string_view(parse(p1, first.body)["result"]["continuation_token"]));
  for (const std::string& bad : std::vector<std::string>{
           "?continuation_token=00000000000000000000000000000000",
           "?sort_order=desc&continuation_token=" + asc_token, "?per_page=9", "?sort_order=up"}) {
    BOOST_TEST_CONTEXT(bad) {
      res = r.get(v2 + bad);
      BOOST_TEST(res.status == 400u);
    }
  }
  // Descending, from the end.
  res = r.get(v2 + "?per_page=10&sort_order=desc");
  doc = parse(p, res.body);
  BOOST_TEST(std::string_view(doc["result"]["images"].at(0)["id"]) ==
             r.emu.image_ids(account).back());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// The Cloudflare-like limiter and its call log, through real sockets.

BOOST_AUTO_TEST_SUITE(limiter)

BOOST_AUTO_TEST_CASE(sliding_window_lockout_and_calls_log) {
  testing::emulator_options o;
  o.rate_limit_mode = testing::limiter_mode::sliding_window;
  o.rate_limit = 3;
  o.rate_window = 400ms;
  o.block_duration = 200ms;
  running r(o);
  const auto id = r.emu.image_ids(account).front();
  testing::connection c(r.ep());
  auto get = [&](const std::string& target) {
    return c.request(verb::get, target, {{"Authorization", bearer}});
  };
  for (int i = 0; i < 3; ++i) {
    BOOST_TEST(get(image_path(id)).status == 200u);
  }
  auto res = get("/client/v4/zones");  // echo routes count as well
  BOOST_TEST(res.status == 429u);
  BOOST_TEST(error_code_of(res.body) == 971);
  BOOST_TEST(res.header("retry-after") == "1");
  BOOST_TEST(res.header("ratelimit-policy") == "\"burst\";q=3;w=1");
  BOOST_TEST(get(image_path(id)).status == 429u);  // locked out, whatever the route
  // The lockout ends, and the window lets calls in again (a call that finds the window still
  // full trips again: Cloudflare's rule, as the soak meets it).
  BOOST_TEST(poll_until([&] { return get(image_path(id)).status == 200u; }));

  const auto in_process = r.emu.calls();
  auto ctl = testing::request(r.ep(), verb::get, "/__emulator/calls");
  BOOST_TEST(ctl.status == 200u);
  simdjson::dom::parser p;
  auto doc = parse(p, ctl.body);
  BOOST_TEST(std::string_view(doc["limiter"]["mode"]) == "sliding");
  BOOST_TEST(std::uint64_t(doc["limiter"]["limit"]) == 3u);
  BOOST_TEST(std::uint64_t(doc["limiter"]["window_ms"]) == 400u);
  BOOST_TEST(std::uint64_t(doc["limiter"]["block_ms"]) == 200u);
  std::vector<double> accepted;
  std::vector<double> limited;
  for (auto t : doc["accepted"].get_array()) {
    accepted.push_back(double(t));
  }
  for (auto t : doc["limited"].get_array()) {
    limited.push_back(double(t));
  }
  BOOST_TEST(accepted.size() == 4u);
  BOOST_TEST(limited.size() >= 2u);
  BOOST_TEST(accepted.size() + limited.size() == in_process.size());
  BOOST_TEST(std::uint64_t(doc["total"]) == in_process.size());
  BOOST_TEST(std::uint64_t(doc["dropped"]) == 0u);
  BOOST_TEST(std::is_sorted(accepted.begin(), accepted.end()));
  BOOST_TEST(accepted.back() <= double(doc["now_ms"]));
  BOOST_TEST(r.emu.tripped() == limited.size());
  // What a soak checks: at most 3 accepted calls in any 400 ms.
  for (std::size_t i = 0; i + 3 < accepted.size(); ++i) {
    BOOST_TEST(accepted[i + 3] - accepted[i] >= 400.0);
  }
  // The lockout: no accepted call within 200 ms after the first refusal.
  for (double t : accepted) {
    BOOST_TEST(!(t > limited.front() && t < limited.front() + 200.0));
  }
  // Incremental reads for a polling soak.
  std::ostringstream since;
  since.precision(3);
  since << std::fixed << accepted[2];
  auto later = testing::request(r.ep(), verb::get, "/__emulator/calls?since_ms=" + since.str());
  auto tail = parse(p, later.body);
  BOOST_TEST(tail["accepted"].get_array().size() == 1u);
  BOOST_TEST(testing::request(r.ep(), verb::post, "/__emulator/reset").status == 200u);
  BOOST_TEST(r.emu.calls().empty());
}

BOOST_AUTO_TEST_CASE(stats_endpoint_reports_methods_and_uploads) {
  running r;
  testing::request(r.ep(), verb::post, uploads_path(), form_headers(),
                   multipart({{"file", "abc", "a.png", "image/png"}}));
  r.get("/client/v4/zones");
  auto res = testing::request(r.ep(), verb::get, "/__emulator/stats");
  simdjson::dom::parser p;
  auto s = parse(p, res.body);
  BOOST_TEST(std::uint64_t(s["uploads"]) == 1u);
  BOOST_TEST(std::uint64_t(s["by_method"]["POST"]) == 1u);
  BOOST_TEST(std::uint64_t(s["by_method"]["GET"]) == 1u);
  BOOST_TEST(std::uint64_t(s["max_request_buffer"]) > 0u);
}

BOOST_AUTO_TEST_SUITE_END()
