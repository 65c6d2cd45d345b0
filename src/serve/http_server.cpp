#include "serve/http_server.h"

#include "core/module.h"

namespace mohge {

std::unique_ptr<HttpServer> http_server_open(size_t threads) {
  // the module's entry (serve/http/httplib_server.cpp)
  using Entry = HttpServer* (*)(size_t threads);
  auto entry = reinterpret_cast<Entry>(
      module_entry("HTTP server", "MOHGE_HTTP_MODULE", MOHGE_HTTP_MODULE, "mohge_http_server_new"));
  return std::unique_ptr<HttpServer>(entry(threads));
}

}  // namespace mohge
