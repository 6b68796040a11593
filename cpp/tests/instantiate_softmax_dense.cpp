// Compiles the softmax dense-target kernels the tests call (see instantiations.hpp).
#define FN_TEST_INSTANTIATE
#include "instantiations.hpp"

FN_TEST_SOFTMAX_DENSE_TYPES(FN_TEST_SOFTMAX, )
