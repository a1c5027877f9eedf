// imagegate-test-redis: a real redis-server for tests written in other languages
// (tests/deploy): started through redis_server (loopback, a free port), its port printed on
// stdout, stopped by its PID when this program's stdin closes.
#include "tests/support/redis_server.hpp"

#include <exception>
#include <iostream>
#include <string>

int main() {
    try {
        const imagegate::testing::redis_server server;
        std::cout << server.port() << std::endl;
        // The caller holds the pipe open for as long as it needs the server.
        std::string line;
        while (std::getline(std::cin, line)) {
        }
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "imagegate-test-redis: " << e.what() << '\n';
        return 1;
    }
}
