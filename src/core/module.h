// defines: module_entry — the entry point of one of mohge's modules (shared objects beside the
//          binary that hold the code needing a large foreign library), loaded on first use
// The binary links none of the libraries that only some commands need: the CUDA backend
// (libmohge_cuda.so: CUDA runtime, cuBLAS), the MPI transports (libmohge_mpi.so: Open MPI, hwloc,
// libevent), the HTTP front end of `mohge serve` (libmohge_http.so: cpp-httplib, OpenSSL,
// brotli, zlib) and the GEMMs (libmohge_onednn.so: oneDNN, at the first product) are loaded by
// the command that needs them, so every other command starts without
// mapping them (docs/BENCHMARKS.md "Startup"). A module links none of the engine's layers: it
// gets what it needs through its entry point and the plain interfaces it implements, so there is
// one copy of every registry, cache and global, the binary's.
#pragma once
#include <string>

namespace mohge {

// The symbol `symbol` of the module at the path in the environment variable `env_var` when set,
// else at `built_path` (where the build put it). The module is loaded once (dlopen, RTLD_NOW |
// RTLD_LOCAL) and stays loaded. Errors (mohge::Error): "cannot load the {what} module PATH:
// {dlerror} (set ENV_VAR to its path)" when the file is missing or does not load, or when it has
// no such symbol.
void* module_entry(const std::string& what, const char* env_var, const std::string& built_path, const char* symbol);

}  // namespace mohge
