// MetricsHttpServer: the /metrics endpoint, a deliberately small HTTP/1.1 server of our own.
//
// Why not prometheus-cpp's Exposer: its civetweb server crashes on a scrape whenever a CUDA
// runtime is loaded in the same process (glibc's positional printf path inside a civetweb
// worker), refuses to start at all with libcublasLt loaded, and takes ~2 s to shut down. A
// Prometheus scrape needs one GET answered with text, which this does on one thread.
//
// Behaviour: GET or HEAD /metrics → 200 with `render()` as text/plain; version=0.0.4;
// GET / → 200 with a one-line pointer; other paths 404; other methods 405; requests over
// 8 KiB 431; every response closes the connection. A client that sends nothing is dropped
// after the read timeout, so a stuck client delays other scrapes by at most that.
//
// Thread-safety: Start/port/the destructor from one thread; `render` runs on the server thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::server {

class MetricsHttpServer {
 public:
  // Binds `address` ("host:port", "[v6]:port"; port 0 = ephemeral) and starts serving.
  // UNAVAILABLE naming the address when it cannot bind; INVALID_ARGUMENT when malformed.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::function<std::string()> render,
      absl::Duration read_timeout = absl::Seconds(2));
  ~MetricsHttpServer();  // stops accepting, finishes the request in progress, joins
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsHttpServer() = default;
  void Serve();
  void HandleConnection(int fd);

  std::function<std::string()> render_;
  absl::Duration read_timeout_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: written once to stop Serve()
  int port_ = 0;
  std::thread thread_;
};

}  // namespace kiln::server
