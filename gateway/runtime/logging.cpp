#include "gateway/runtime/logging.hpp"

#include "gateway/core/log_escape.hpp"
#include "gateway/runtime/access_log.hpp"

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

namespace {

spdlog::level::level_enum parse_level(const std::string& name) {
    const auto level = spdlog::level::from_str(name);
    if (level == spdlog::level::off && name != "off") {
        throw std::invalid_argument("unknown log level");
    }
    return level;
}

std::unique_ptr<spdlog::formatter> make_formatter(bool json) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    // %l is one of spdlog's fixed level names and %t a number: both JSON-safe as written.
    formatter->add_flag<message_flag>('*', json).set_pattern(
        json ? R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","thread":%t,%*})"
             : "%Y-%m-%dT%H:%M:%S.%e%z %l [%t] %*");
    return formatter;
}

}  // namespace

std::shared_ptr<spdlog::logger> make_logger(const config::log_settings& s) {
    auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    auto log = std::make_shared<spdlog::logger>("imagegate", std::move(sink));
    apply_log_settings(*log, s);
    log->flush_on(spdlog::level::warn);
    return log;
}

void apply_log_settings(spdlog::logger& log, const config::log_settings& s) {
    const auto level = parse_level(s.level);
    log.set_formatter(make_formatter(s.format == "json"));
    log.set_level(level);
}

}  // namespace imagegate::gateway
