// The access log's queue: a writer that stalls makes lines drop (counted), never makes the
// observer wait; what was queued is written in order once the writer goes on.
#define BOOST_TEST_MODULE access_log_test
#include "gateway/http/server.hpp"
#include "gateway/runtime/access_log.hpp"

#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <future>
#include <mutex>

namespace gw = imagegate::gateway;

namespace {

/// A sink whose first write blocks until release(): a writer thread stuck on a slow disk.
class stalling_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    std::future<void> entered() { return entered_.get_future(); }
    void release() { release_.set_value(); }
    std::vector<std::string> lines() {
        const std::lock_guard lock(mutex_);
        return lines_;
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        if (first_) {
            first_ = false;
            entered_.set_value();
            // base_sink holds mutex_ here, as a sink blocked in write(2) would.
            released_.wait();
        }
        lines_.emplace_back(msg.payload.data(), msg.payload.size());
    }
    void flush_() override {}

private:
    bool first_ = true;
    std::promise<void> entered_;
    std::promise<void> release_;
    std::shared_future<void> released_ = release_.get_future().share();
    std::vector<std::string> lines_;
};

gw::exchange_record record(std::string_view id, std::string_view cache = "fwd=miss") {
    gw::exchange_record r;
    r.listener = "data";
    r.method = "GET";
    r.target = "/client/v4/accounts/a/images/v1/x?secret=1";
    r.request_id = id;
    r.status = 200;
    r.cache_status = cache;
    return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_stalled_writer_drops_and_counts_never_blocks) {
    auto sink = std::make_shared<stalling_sink>();
    auto entered = sink->entered();
    auto log = std::make_shared<spdlog::logger>("t", sink);
    imagegate::config::log_settings s;
    std::vector<std::string> written;
    {
        gw::access_log access(log, s, 1, /*capacity=*/2);
        access.observe(record("r0"));
        entered.wait();  // the writer holds r0 in the stalled sink
        access.observe(record("r1"));
        access.observe(record("r2"));
        access.observe(record("r3"));  // the queue (2) is full: dropped at once
        access.observe(record("r4"));
        BOOST_TEST(access.counters().dropped == 2u);
        sink->release();
        access.flush();
        const auto c = access.counters();
        BOOST_TEST(c.written == 3u);
        BOOST_TEST(c.dropped == 2u);
    }
    const auto lines = sink->lines();
    BOOST_REQUIRE(lines.size() == 3u);
    BOOST_TEST(lines[0].find("req=r0 GET") != std::string::npos, lines[0]);
    BOOST_TEST(lines[2].find("req=r2 GET") != std::string::npos, lines[2]);
    // The query string is never written.
    BOOST_TEST(lines[1].find("secret") == std::string::npos, lines[1]);
}

BOOST_AUTO_TEST_CASE(off_or_above_info_writes_nothing_and_reload_switches_it) {
    auto sink = std::make_shared<stalling_sink>();
    sink->release();
    auto log = std::make_shared<spdlog::logger>("t", sink);
    imagegate::config::log_settings s;
    s.access_log = false;
    gw::access_log access(log, s, 1);
    access.observe(record("off"));
    s.access_log = true;
    s.level = "warn";
    access.configure(s);
    access.observe(record("warn"));
    s.level = "info";
    s.access_log_hit_sample = 1;
    access.configure(s);
    access.observe(record("on-hit", "hit"));
    access.flush();
    const auto lines = sink->lines();
    BOOST_REQUIRE(lines.size() == 1u);
    BOOST_TEST(lines[0].find("req=on-hit") != std::string::npos);
    BOOST_TEST(access.counters().sampled_out == 0u);
}
