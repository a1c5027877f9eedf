#define BOOST_TEST_MODULE unit_redis
#include <boost/test/unit_test.hpp>
