#include "gateway/runtime/logging.hpp"

#include "gateway/core/log_escape.hpp"
#include "gateway/http/server.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <iterator>
#include <stdexcept>

namespace imagegate::gateway {
namespace {

// The `%*` flag of our patterns: the message, escaped for the format. In JSON the member
// `"msg":"…"`, or for an access line `"msg":"access",` followed by the members access_log
// rendered (their strings escaped there): the logger name is ours, never a client's.
class message_flag final : public spdlog::custom_flag_formatter {
public:
    explicit message_flag(bool json) : json_(json) {}

    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        const std::string_view payload(msg.payload.data(), msg.payload.size());
        if (!json_) {
            escape_to(std::back_inserter(dest), payload, escape_mode::line);
            return;
        }
        const std::string_view name(msg.logger_name.data(), msg.logger_name.size());
        if (name == access_logger_name) {
            append(dest, R"("msg":"access",)");
            append(dest, payload);
            return;
        }
        append(dest, R"("msg":")");
        escape_to(std::back_inserter(dest), payload, escape_mode::json);
        dest.push_back('"');
    }

    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<message_flag>(json_);
    }

private:
    static void append(spdlog::memory_buf_t& dest, std::string_view s) {
        dest.append(s.data(), s.data() + s.size());
    }

    bool json_;
};

}  // namespace

std::shared_ptr<spdlog::logger> make_logger(const config::log_settings& s) {
    auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    auto log = std::make_shared<spdlog::logger>("imagegate", std::move(sink));
    const auto level = spdlog::level::from_str(s.level);
    if (level == spdlog::level::off && s.level != "off") {
        throw std::invalid_argument("unknown log level");
    }
    log->set_level(level);
    const bool json = s.format == "json";
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    // %l is one of spdlog's fixed level names and %t a number: both JSON-safe as written.
    formatter->add_flag<message_flag>('*', json).set_pattern(
        json ? R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","thread":%t,%*})"
             : "%Y-%m-%dT%H:%M:%S.%e%z %l [%t] %*");
    log->set_formatter(std::move(formatter));
    log->flush_on(spdlog::level::warn);
    return log;
}

access_log::access_log(const std::shared_ptr<spdlog::logger>& log, const config::log_settings& s)
    : log_(log->clone(std::string(access_logger_name))), json_(s.format == "json") {}

void access_log::write(const exchange_record& rec) const {
    if (!log_->should_log(spdlog::level::info)) {
        return;
    }
    const double ms = std::chrono::duration<double, std::milli>(rec.duration).count();
    // The target as sent (absolute-form included, so a refused one shows what it was),
    // without its query string.
    const std::string_view target = rec.target.substr(0, rec.target.find('?'));
    const std::string_view id = rec.request_id.empty() ? std::string_view{"-"} : rec.request_id;
    // The listener, id, method and cache status are the gateway's own words (a method Beast
    // does not know is "<unknown>"); they are escaped all the same, so this line stays
    // sound whatever the session puts there.
    if (json_) {
        log_->info(R"("listener":{},"req":{},"method":{},"target":{},"status":{},"cache":{},)"
                   R"("dur_ms":{:.3f},"bytes":{})",
                   json_string(rec.listener), json_string(id), json_string(rec.method),
                   json_string(target), rec.status, json_string(rec.cache_status), ms,
                   rec.bytes_written);
        return;
    }
    log_->info("access {} req={} {} {} status={} cache={} dur_ms={:.3f} bytes={}",
               log_escaped(rec.listener), log_escaped(id), log_escaped(rec.method),
               log_quoted(target), rec.status, log_quoted(rec.cache_status), ms, rec.bytes_written);
}

}  // namespace imagegate::gateway
