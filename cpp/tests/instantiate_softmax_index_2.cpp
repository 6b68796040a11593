// Compiles the softmax class-index (2 of 3) kernels the tests call (see instantiations.hpp).
#define FN_TEST_INSTANTIATE
#include "instantiations.hpp"

FN_TEST_SOFTMAX_INDEX_TYPES_2(FN_TEST_SOFTMAX, )
