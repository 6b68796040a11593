// Compiles the binary class-index kernels the tests call (see instantiations.hpp).
#define FN_TEST_INSTANTIATE
#include "instantiations.hpp"

FN_TEST_SIGMOID_LABELS_TYPES(FN_TEST_SIGMOID_LABELS, )
