// Prints the version and whether the kernels were compiled with OpenMP.
#include <focal_native/focal_native.hpp>

#include <cstdio>

int main() {
  std::printf("{\"version\": \"%s\", \"openmp\": %s}\n", FOCAL_NATIVE_VERSION,
              focal_native::has_openmp() ? "true" : "false");
  return 0;
}
