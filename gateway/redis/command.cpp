#include "gateway/redis/command.hpp"

#include <hiredis/hiredis.h>

#include <limits>
#include <memory>
#include <ostream>

namespace imagegate::redis {

std::ostream& operator<<(std::ostream& os, const command& c) {
    return os << c.name() << " (" << (c.args().empty() ? 0 : c.args().size() - 1) << " args)";
}

boost::system::result<void> append_resp(std::string& out, const command& c) {
    const auto& args = c.args();
    if (args.empty() || args.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        return make_error_code(error::command_too_large);
    }
    // The frame adds at most 25 bytes per argument (`$<20 digits>\r\n` + `\r\n`).
    std::size_t total = 0;
    for (const auto& a : args) {
        total += a.size() + 25;
        if (total > max_command_bytes) {
            return make_error_code(error::command_too_large);
        }
    }
    std::vector<const char*> argv;
    std::vector<std::size_t> argvlen;
    argv.reserve(args.size());
    argvlen.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        argvlen.push_back(a.size());
    }
    char* frame = nullptr;
    const int n =
        redisFormatCommandArgv(&frame, static_cast<int>(args.size()), argv.data(), argvlen.data());
    const std::unique_ptr<char, void (*)(char*)> owner(frame, redisFreeCommand);
    if (n < 0 || frame == nullptr) {
        throw std::bad_alloc();  // the formatter's only failure is malloc
    }
    out.append(frame, static_cast<std::size_t>(n));
    return {};
}

}  // namespace imagegate::redis
