#include "server/pipelined_http_server.h"

#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace retort::server {

namespace {

using Clock = std::chrono::steady_clock;

// True when `events` happened on the socket within `timeout_ms`; a closed peer counts as readable
// (the read then returns 0).
bool wait_for(int sock, short events, int timeout_ms) {
  pollfd entry{sock, events, 0};
  int ready;
  do ready = ::poll(&entry, 1, timeout_ms);
  while (ready < 0 && errno == EINTR);
  if (ready <= 0 || (entry.revents & POLLNVAL) != 0) return false;
  return events == POLLOUT ? (entry.revents & POLLOUT) != 0 : true;
}

int milliseconds(time_t seconds, time_t microseconds) {
  return static_cast<int>(seconds * 1000 + microseconds / 1000);
}

void numeric_address(const sockaddr_storage& address, socklen_t length, std::string& ip, int& port) {
  std::array<char, NI_MAXHOST> host{};
  std::array<char, NI_MAXSERV> service{};
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host.data(), host.size(), service.data(),
                    service.size(), NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host.data();
    port = std::atoi(service.data());
  }
}

// One connection's bytes, read into a buffer that outlives any one request.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int sock, int read_timeout_ms, int write_timeout_ms)
      : sock_(sock), read_timeout_ms_(read_timeout_ms), write_timeout_ms_(write_timeout_ms) {}

  bool has_buffered() const { return begin_ < end_; }
  bool is_readable() const override { return has_buffered() || wait_for(sock_, POLLIN, read_timeout_ms_); }
  // Writable and still open at the other end: a response notices a client that went away here
  // (writes into the socket's buffer would succeed for a while after the client closed it).
  bool is_writable() const override { return wait_for(sock_, POLLOUT, write_timeout_ms_) && peer_open(); }

  ssize_t read(char* ptr, size_t size) override {
    if (!has_buffered()) {
      if (!wait_for(sock_, POLLIN, read_timeout_ms_)) return -1;
      ssize_t received;
      do received = ::recv(sock_, buffer_.data(), buffer_.size(), 0);
      while (received < 0 && errno == EINTR);
      if (received <= 0) return received;
      begin_ = 0;
      end_ = static_cast<size_t>(received);
    }
    const size_t count = std::min(size, end_ - begin_);
    std::memcpy(ptr, buffer_.data() + begin_, count);
    begin_ += count;
    return static_cast<ssize_t>(count);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t sent;
    do sent = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    return sent;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getpeername(sock_, reinterpret_cast<sockaddr*>(&address), &length) == 0) numeric_address(address, length, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(sock_, reinterpret_cast<sockaddr*>(&address), &length) == 0) numeric_address(address, length, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  // Nothing to read, or bytes to peek at (a pipelined request): open. Readable with no bytes: the
  // client closed its side (or reset the connection).
  bool peer_open() const {
    pollfd entry{sock_, POLLIN, 0};
    if (::poll(&entry, 1, 0) <= 0) return true;
    char byte;
    ssize_t peeked;
    do peeked = ::recv(sock_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    while (peeked < 0 && errno == EINTR);
    return peeked > 0 || (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }

  int sock_;
  int read_timeout_ms_, write_timeout_ms_;
  std::array<char, 16 * 1024> buffer_;
  size_t begin_ = 0, end_ = 0;
};

}  // namespace

// As httplib's loop: at most keep_alive_max_count_ requests, the last answered with "Connection:
// close"; a connection idle for keep_alive_timeout_sec_ between requests is closed; stop() (which
// invalidates svr_sock_) ends the loop at the next wait, checked every 100 ms.
bool PipelinedHttpServer::process_and_close_socket(socket_t sock) {
  const int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ConnectionStream stream(sock, milliseconds(read_timeout_sec_, read_timeout_usec_),
                          milliseconds(write_timeout_sec_, write_timeout_usec_));
  auto next_request_arrives = [&] {
    if (stream.has_buffered()) return true;
    const auto deadline = Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
    while (svr_sock_ != INVALID_SOCKET) {
      if (wait_for(sock, POLLIN, 100)) return true;
      if (Clock::now() >= deadline) return false;
    }
    return false;
  };
  bool ok = false;
  for (size_t served = 0; served < keep_alive_max_count_ && next_request_arrives(); ++served) {
    bool connection_closed = false;
    ok = process_request(stream, served + 1 == keep_alive_max_count_, connection_closed, nullptr);
    if (!ok || connection_closed) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace retort::server
