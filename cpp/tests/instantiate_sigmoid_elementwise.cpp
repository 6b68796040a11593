// Compiles the binary elementwise kernels the tests call (see instantiations.hpp).
#define FN_TEST_INSTANTIATE
#include "instantiations.hpp"

FN_TEST_SIGMOID_ELEMENTWISE_TYPES(FN_TEST_SIGMOID_ELEMENTWISE, )
