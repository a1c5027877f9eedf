#define BOOST_TEST_MODULE redis_test
#include <boost/test/unit_test.hpp>
