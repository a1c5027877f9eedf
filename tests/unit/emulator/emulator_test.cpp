// The emulator, in-process on 127.0.0.1:0, driven through the verified-TLS test client.
#define BOOST_TEST_MODULE emulator
#include <boost/test/unit_test.hpp>

#include "tests/emulator/emulator.hpp"
#include "tests/support/http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/system/system_error.hpp>

#include <simdjson.h>

#include <atomic>
#include <set>
#include <sstream>
#include <thread>

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
  // A raw '/' splits the id: that is another route.
  res = r.get(image_path("folder/cat"));
  BOOST_TEST(res.status == 404u);
  BOOST_TEST(error_code_of(res.body) == 7000);
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
  auto res = testing::request(ep, verb::post, "/__emulator/faults", {},
                              R"({"kind":"status","status":503,"image_id":")" + id +
                                  R"(","times":1})");
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
  auto res = testing::request(r.ep(), verb::patch, image_path(id), {{"Authorization", bearer}},
                              R"({"creator":"alice","metadata":{"k":"v"},"requireSignedURLs":true})");
  BOOST_TEST(res.status == 200u);
  for (const auto& body : {res.body, r.get(image_path(id)).body}) {
    BOOST_TEST(body.find(R"("creator":"alice")") != std::string::npos);
    BOOST_TEST(body.find(R"("meta":{"k":"v"})") != std::string::npos);
    BOOST_TEST(body.find(R"("requireSignedURLs":true)") != std::string::npos);
  }
  for (std::string bad : {R"({"creator":5})", R"({"requireSignedURLs":"yes"})", "[1]", "{",
                          R"({"metadata":[]})"}) {
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
  std::string big_header = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') +
                           "\r\n\r\n";
  BOOST_TEST(testing::raw_exchange(ep, big_header).starts_with("HTTP/1.1 431"));
  std::string big_body = "PATCH " + image_path(id) +
                         " HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n" +
                         std::string(70000, '{');
  BOOST_TEST(testing::raw_exchange(ep, big_body).starts_with("HTTP/1.1 413"));
  // Two pipelined requests on one connection, then close: two answers.
  std::string two = "GET " + image_path(id) + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + bearer +
                    "\r\n\r\nGET " + image_path(id) + " HTTP/1.1\r\nHost: x\r\nAuthorization: " +
                    bearer + "\r\nConnection: close\r\n\r\n";
  auto out = testing::raw_exchange(ep, two);
  std::size_t answers = 0;
  for (auto pos = out.find("HTTP/1.1 200"); pos != std::string::npos;
       pos = out.find("HTTP/1.1 200", pos + 1)) {
    ++answers;
  }
  BOOST_TEST(answers == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
