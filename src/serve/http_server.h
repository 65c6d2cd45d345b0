// defines: HttpServer, HttpRequest, HttpResponse, HttpSink, http_server_open — the HTTP front end
//          of `mohge serve` as an interface, implemented on cpp-httplib in a module
// cpp-httplib brings OpenSSL, brotli and zlib; they are mapped only by `mohge serve`, which loads
// the module libmohge_http.so (serve/http/httplib_server.cpp) through http_server_open. The module
// links none of the engine: it sees these types only (header-only, standard library).
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mohge {

struct HttpRequest {
  std::string body;
  std::string remote_addr;  // the client's address and port, and the port it connected to
  int remote_port = 0, local_port = 0;
};

// Where a streamed response writes.
class HttpSink {
 public:
  virtual ~HttpSink() = default;
  // Sends `data` at once; false when the client has gone away.
  virtual bool write(const std::string& data) = 0;
  virtual void done() = 0;  // the response is complete
};

// What a handler answers: status, content type and body; or, when `stream` is set, a chunked body
// that the server gets by calling stream until it returns false or calls HttpSink::done, then
// stream_end(true when it completed, false when the connection ended first).
struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::function<bool(HttpSink&)> stream;
  std::function<void(bool completed)> stream_end;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;

class HttpServer {
 public:
  virtual ~HttpServer() = default;
  // Before bind: the handler of method ("GET" | "POST") on path (an exact path).
  virtual void route(const std::string& method, const std::string& path, HttpHandler handler) = 0;
  // Binds host:port (0: any free port); returns the port, or -1 when the address cannot be bound.
  virtual int bind(const std::string& host, int port) = 0;
  virtual void listen() = 0;  // after bind: serves until stop(), on its own threads
  virtual void stop() = 0;    // from another thread: listen returns
};

// A server on the module libmohge_http.so (MOHGE_HTTP_MODULE in the environment overrides where it
// is) that handles up to `threads` connections at once, each response's writes sent without delay
// (TCP_NODELAY). Errors (mohge::Error): the module does not load (its path and why).
std::unique_ptr<HttpServer> http_server_open(size_t threads);

}  // namespace mohge
