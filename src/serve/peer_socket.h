// defines: PeerSocket — whether the client of an HTTP request has closed its connection
// cpp-httplib 0.11 (Debian's) hands a handler no socket and has no is_connection_closed (added in
// later versions), so a non-streaming request could not notice that its client went away and
// would generate to the end for nobody. The connection is found by its address pair among this
// process's sockets (it stays open while the handler runs: httplib closes it after the handler
// returns) and polled for the peer's FIN.
#pragma once
#include <string>

namespace mohge {

class PeerSocket {
 public:
  // The connected TCP socket whose local port is local_port and whose peer is remote_addr:
  // remote_port (as httplib's Request reports them); found() is false when there is none.
  PeerSocket(const std::string& remote_addr, int remote_port, int local_port);
  bool found() const { return fd_ >= 0; }
  // True once the peer has closed or reset the connection (POLLRDHUP / POLLHUP / POLLERR). Does
  // not read: pipelined bytes of a next request stay for httplib. False when !found().
  bool closed() const;

 private:
  int fd_ = -1;
};

}  // namespace mohge
