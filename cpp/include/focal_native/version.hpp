// focal_native: the single source of the version number.
// pyproject.toml (regex metadata provider) and CMakeLists.txt both read it.
#pragma once

#define FOCAL_NATIVE_VERSION_MAJOR 0
#define FOCAL_NATIVE_VERSION_MINOR 1
#define FOCAL_NATIVE_VERSION_PATCH 0
#define FOCAL_NATIVE_VERSION "0.1.0"
