// defines: mohge_http_server_new — the entry point of the module libmohge_http.so: an HttpServer
//          (serve/http_server.h) on cpp-httplib
#include <httplib.h>
#include <sys/socket.h>

#include "serve/http_server.h"

namespace mohge {
namespace {

class HttplibSink final : public HttpSink {
 public:
  explicit HttplibSink(httplib::DataSink& sink) : sink_(sink) {}
  bool write(const std::string& data) override { return sink_.write(data.data(), data.size()); }
  void done() override { sink_.done(); }

 private:
  httplib::DataSink& sink_;
};

class HttplibServer final : public HttpServer {
 public:
  explicit HttplibServer(size_t threads) {
    // one thread per open connection: every slot and queue place can be waited on at once
    svr_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    svr_.set_tcp_nodelay(true);  // each streamed token leaves at once, not after the client's delayed ACK
    // SO_REUSEADDR only (a restart may bind while the old connections wait out TIME_WAIT).
    // httplib's default adds SO_REUSEPORT, with which a second server on a taken port starts
    // silently and the kernel splits the connections between the two.
    svr_.set_socket_options([this](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listen_fd_ = sock;  // the last socket set up is the one bound (raise_backlog)
    });
  }

  void route(const std::string& method, const std::string& path, HttpHandler handler) override {
    auto call = [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      HttpResponse out;
      handler(HttpRequest{req.body, req.remote_addr, req.remote_port, req.local_port}, out);
      res.status = out.status;
      for (auto& [name, value] : out.headers) res.set_header(name, value);
      if (!out.stream) return res.set_content(out.body, out.content_type);
      res.set_chunked_content_provider(
          out.content_type,
          [stream = std::move(out.stream)](size_t, httplib::DataSink& sink) {
            HttplibSink s(sink);
            return stream(s);
          },
          [end = std::move(out.stream_end)](bool success) {
            if (end) end(success);
          });
    };
    if (method == "GET") svr_.Get(path, std::move(call));
    else svr_.Post(path, std::move(call));
  }

  int bind(const std::string& host, int port) override {
    const int bound = port == 0 ? svr_.bind_to_any_port(host) : (svr_.bind_to_port(host, port) ? port : -1);
    if (bound > 0) raise_backlog();
    return bound;
  }
  void listen() override { svr_.listen_after_bind(); }
  void stop() override { svr_.stop(); }

 private:
  // Debian's compiled cpp-httplib listens with a backlog of 5 connections: 32 clients connecting at
  // once overflowed it (SYNs dropped and retried a second later, some connections reset). A second
  // listen() on the listening socket sets the kernel's limit instead.
  void raise_backlog() const {
    if (listen_fd_ >= 0) ::listen(listen_fd_, SOMAXCONN);
  }

  httplib::Server svr_;
  socket_t listen_fd_ = -1;
};

}  // namespace
}  // namespace mohge

// A new server (serve/http_server.h), owned by the caller. Unmangled, for dlsym.
extern "C" mohge::HttpServer* mohge_http_server_new(size_t threads) { return new mohge::HttplibServer(threads); }
