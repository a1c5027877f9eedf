// The fuzz build's one Asio + Beast translation unit, the counterpart of gateway/core/net.cpp:
// BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION are PUBLIC on fuzz_net.
// Asio-SSL is left out: no target opens a TLS stream.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
