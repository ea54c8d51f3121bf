#pragma once
// httplib::Server with a keep-alive loop of its own. httplib 0.11 (Debian 12's) reads each request
// of a connection through a new SocketStream, so the bytes one read took beyond the first request
// (a client that pipelines requests, as HTTP/1.1 allows) were dropped with it and only the first
// request was answered. Here one buffered stream lives as long as the connection: a request already
// in its buffer is served at once, and the socket is waited on only when the buffer is empty.
// Everything else (parsing, routing, limits, writing responses) is httplib's process_request.
#include <httplib.h>

namespace retort::server {

class PipelinedHttpServer : public httplib::Server {
 private:
  bool process_and_close_socket(socket_t sock) override;
};

}  // namespace retort::server
