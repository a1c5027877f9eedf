// imagegate: a caching gateway for the Cloudflare Images "image details" API.
#include "gateway/app.hpp"
#include "gateway/logging.hpp"

#include <spdlog/spdlog.h>

int main() {
    imagegate::config::settings s;
    auto log = imagegate::gateway::make_logger(s.log);
    imagegate::gateway::app a(s, log);
    a.start();
    return a.run_until_signal();
}
