// focal_native: focal loss for binary (sigmoid) and multiclass (softmax)
// classification, loss / gradient / fused, float and double. Header-only C++17.
// Include this umbrella header; see the README's C++ section for the API.
#pragma once

#include "version.hpp"
#include "common.hpp"
#include "sigmoid.hpp"
#include "softmax.hpp"
