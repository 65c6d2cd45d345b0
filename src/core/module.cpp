#include "core/module.h"

#include <dlfcn.h>

#include <cstdlib>

#include "core/error.h"

namespace mohge {

void* module_entry(const std::string& what, const char* env_var, const std::string& built_path, const char* symbol) {
  const char* env = std::getenv(env_var);
  const std::string path = env && *env ? env : built_path;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  void* entry = lib ? dlsym(lib, symbol) : nullptr;
  if (!entry) {
    // dlerror names the file first ("PATH: cannot open shared object file: ..."): once is enough
    const char* err = dlerror();
    std::string why = err ? err : "no entry point";
    if (why.starts_with(path + ": ")) why.erase(0, path.size() + 2);
    fail("cannot load the {} module {}: {} (set {} to its path)", what, path, why, env_var);
  }
  return entry;
}

}  // namespace mohge
