// focal_native._core: the compiled module. Creates the module, picks the
// kernel table for this CPU, and registers one group of functions per concept.
#include "pybind.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include <focal_native/focal_native.hpp>

#include "dispatch.hpp"
#include "registry.hpp"

namespace focal_native_bindings {

namespace {

// The instruction sets compiled into this build, best first.
struct IsaEntry {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
};

bool cpu_has_avx512() {
#if defined(FOCAL_NATIVE_HAVE_AVX512)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}
bool cpu_has_avx2() {
#if defined(FOCAL_NATIVE_HAVE_AVX2)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}
bool always() { return true; }

const IsaEntry kIsas[] = {
#if defined(FOCAL_NATIVE_HAVE_AVX512)
    {"avx512", &kernel_table_avx512, &cpu_has_avx512},
#endif
#if defined(FOCAL_NATIVE_HAVE_AVX2)
    {"avx2", &kernel_table_avx2, &cpu_has_avx2},
#endif
    {"baseline", &kernel_table_baseline, &always},
};

std::atomic<const KernelTable*> g_table{nullptr};

const KernelTable* best_table() {
  for (const auto& e : kIsas)
    if (e.supported()) return &e.table();
  return &kernel_table_baseline();
}

// Selects an instruction set by name ("" or "auto": the best this CPU runs).
// Returns false when that set is not compiled in or not supported here.
bool select_isa(const std::string& name) {
  if (name.empty() || name == "auto") {
    g_table.store(best_table());
    return true;
  }
  for (const auto& e : kIsas) {
    if (name == e.name) {
      if (!e.supported()) return false;
      g_table.store(&e.table());
      return true;
    }
  }
  return false;
}

}  // namespace

const KernelTable& kernels() { return *g_table.load(std::memory_order_relaxed); }

}  // namespace focal_native_bindings

PYBIND11_MODULE(_core, m) {
  namespace fb = focal_native_bindings;
  m.doc() = "focal_native compiled kernels (private; use the focal_native package)";
  fb::g_table.store(fb::best_table());
  if (const char* env = std::getenv("FOCAL_NATIVE_ISA")) {
    if (!fb::select_isa(env))
      throw py::value_error(std::string("FOCAL_NATIVE_ISA=") + env +
                            ": instruction set not compiled in or not supported by this CPU");
  }

  m.attr("__version__") = FOCAL_NATIVE_VERSION;
  m.attr("has_openmp") = focal_native::has_openmp();
  py::list compiled;
  for (const auto& e : fb::kIsas) compiled.append(e.name);
  m.attr("compiled_isas") = compiled;
  m.def("supported_isas", [] {
    py::list out;
    for (const auto& e : fb::kIsas)
      if (e.supported()) out.append(e.name);
    return out;
  }, "Instruction sets compiled in that this CPU runs, best first.");
  m.def("get_isa", [] { return std::string(fb::kernels().isa); },
        "The instruction set the kernels currently run with.");
  m.def("_set_isa", [](const std::string& name) {
    if (!fb::select_isa(name))
      throw py::value_error("instruction set '" + name +
                            "' is not compiled in or not supported by this CPU");
  }, py::arg("name"), "Force an instruction set (testing); '' or 'auto' restores the best.");
  m.def("get_num_threads", [] { return focal_native::get_num_threads(); });
  m.def("set_num_threads", [](int n) { focal_native::set_num_threads(n); }, py::arg("n"));
  m.def("_mark_forked_child", [] { focal_native::detail::mark_forked_child(); });
  m.def("_in_forked_child", [] {
    return focal_native::runtime_state::in_forked_child.load();
  });

  fb::register_sigmoid(m);
  fb::register_softmax(m);
}
