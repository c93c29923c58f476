// The in-process SSH transport: one Libssh2Link per session, driven by a
// broker's poller.
//
// The session's TCP socket is non-blocking and watched by a broker like
// any other descriptor: no thread per host, so one master holds hundreds
// of sessions. Connect, key exchange, host-key check, authentication and
// the exec of the first stage are a state machine stepped on readiness;
// afterwards the link pumps bytes between the channel and one end of a
// socketpair, whose other end the bootstrap (and then the router's Stream)
// uses like a pipe to a local process. The channel's stderr goes to a pipe
// the same way. So everything above this file treats an in-process session
// exactly like an ssh process.
//
// Why a socketpair and not a Stream on the channel itself: libssh2 is not
// thread-safe per session, and a libssh2 call may read packets into its
// own buffer without the socket becoming readable again. Keeping every
// libssh2 call of a session on its broker's thread, and draining the
// channel after each step, rules out both a data race and a lost wake-up.
//
// Flow control: each direction buffers at most kPumpBuffer bytes; a full
// buffer stops reading from its source, so a slow side slows the other.
//
// Batched sends: once running, libssh2's packets (32 KiB of data each) go
// into a buffer of ours, written to the socket at the end of each pump
// pass, not one send() per packet; the pump gives libssh2 no more data
// while the buffer holds kSendBatch bytes, and closes the link only once
// the buffer is empty. On loopback each send() woke sshd at
// once, sshd woke the agent, and the three took turns on one core every
// 40 µs: a push to 8 hosts left the machine a seventh idle.
//
// Threads: a link runs on the broker that Broker::share() gives it, the
// router's or a helper, so that the sessions of a fan-out encrypt on every
// core; it talks to the router only through the socketpair. "Broker
// thread" below means that broker's.
//
// Lifetime: that broker's handlers for the two descriptors own the link;
// it goes when it stops watching them, or with the broker.
#include <arpa/inet.h>
#include <fcntl.h>
#include <libssh2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "router/router.h"
#include "transports/ssh.h"
#include "transports/ssh_config.h"

namespace spindle {
namespace {

constexpr size_t kPumpBuffer = 1 << 20;
constexpr size_t kChunk = 256 * 1024;
// Bytes of libssh2's packets held for one send(); no channel write beyond.
constexpr size_t kSendBatch = 512 * 1024;
// A packet (at most 35,000 bytes) always fits behind a full batch, even
// before the buffer moves its bytes to the front (see batch_send).
static_assert(kSendBatch + kChunk + 64 * 1024 <= kPumpBuffer);

// Bytes on their way: one direction of the pump, or libssh2's packets
// waiting for send(). Reads land in the free space at the end and writes
// take from the front by moving an offset: a channel write takes one
// packet (32 KiB) at a time, and erasing that from the front of a full
// buffer moved a mebibyte per packet (15 % of a bulk push's CPU). The
// unsent rest moves to the front only when the free space runs short.
class PumpBuffer {
 public:
  PumpBuffer() : buf_(new char[kPumpBuffer]) {}
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  const char* data() const { return buf_.get() + begin_; }
  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  // Where the next read goes: at most kChunk bytes, never past kPumpBuffer
  // in all. Empty when the buffer is full.
  std::pair<char*, size_t> space() {
    if (begin_ > 0 && kPumpBuffer - end_ < kChunk) {
      memmove(buf_.get(), data(), size());
      end_ -= begin_;
      begin_ = 0;
    }
    return {buf_.get() + end_, std::min(kChunk, kPumpBuffer - end_)};
  }
  void commit(size_t n) { end_ += n; }

 private:
  std::unique_ptr<char[]> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    libssh2_init(0);
    // Five descriptors a session: let a master hold hundreds.
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  });
}

std::string local_user_name() {
  struct passwd* pw = getpwuid(getuid());
  return pw ? pw->pw_name : "root";
}

bool file_exists(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

// Everything the link needs, resolved from the options and ~/.ssh/config
// on the caller's thread.
struct Settings {
  std::string target;
  std::string host;
  int port = 22;
  std::string user;
  std::vector<std::string> identity_files;
  bool identities_only = false;
  std::vector<std::string> known_hosts_files;
  HostKeyCheck check = HostKeyCheck::kEnforce;
  std::string password;
  std::string passphrase;
  bool compression = false;
  absl::Duration connect_timeout;
  absl::Duration keepalive_interval;
  int keepalive_count_max = 3;
  std::string command;
};

const char* key_type_name(int type) {
  switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
  }
  return "unknown";
}

int known_host_key_bits(int type) {
  switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
  }
  return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
}

class Libssh2Link : public std::enable_shared_from_this<Libssh2Link> {
 public:
  Libssh2Link(Broker::Share home, Settings s, std::vector<sockaddr_storage> addrs, int local, int diag)
      : home_(std::move(home)), s_(std::move(s)), addrs_(std::move(addrs)), local_(local), diag_(diag) {}
  // Frees what close_all() did not (the broker stopped first).
  ~Libssh2Link() { release(); }
  Libssh2Link(const Libssh2Link&) = delete;
  Libssh2Link& operator=(const Libssh2Link&) = delete;

  // Broker thread. Starts connecting; `started` gets the outcome of
  // everything up to the exec of the first stage.
  void start(std::shared_ptr<Latch<absl::Status>> started) {
    started_ = std::move(started);
    connect_timer_ = broker()->call_later(s_.connect_timeout, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self) return;
      self->connect_timer_ = 0;
      if (self->phase_ != Phase::kRunning) self->connect_timed_out();
    });
    connect_next();
  }

 private:
  enum class Phase { kConnect, kHandshake, kAuthList, kAuth, kOpen, kExec, kRunning, kClosed };
  using Attempt = std::function<int()>;

  Broker* broker() const { return home_.broker(); }
  std::string where() const { return absl::StrCat(s_.host, ":", s_.port); }

  void connect_next() {
    while (next_addr_ < addrs_.size()) {
      const sockaddr_storage& a = addrs_[next_addr_++];
      sock_ = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (sock_ < 0) continue;
      int one = 1;
      setsockopt(sock_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      socklen_t len = a.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
      if (connect(sock_, reinterpret_cast<const sockaddr*>(&a), len) == 0 || errno == EINPROGRESS) {
        phase_ = Phase::kConnect;
        broker()->watch(sock_, false, true, [self = shared_from_this()](const PollEvent&) { self->step(); });
        return;
      }
      last_connect_errno_ = errno;
      close(sock_);
      sock_ = -1;
    }
    fail_connect();
  }

  void connect_timed_out() {
    fail(ssh_error(SshError::kTimeout, s_.target,
                   absl::StrCat("no session after ", absl::FormatDuration(s_.connect_timeout), " (", where(), ")")));
  }

  void fail_connect() {
    int e = last_connect_errno_;
    std::string detail = absl::StrCat(where(), ": ", strerror(e));
    fail(ssh_error(e == ECONNREFUSED ? SshError::kRefused
                   : e == ETIMEDOUT  ? SshError::kTimeout
                                     : SshError::kClosed,
                   s_.target, detail));
  }

  // Runs the state machine as far as it goes without blocking.
  void step() {
    if (phase_ == Phase::kConnect) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(sock_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == EINPROGRESS) return;
      if (err != 0) {
        broker()->unwatch(sock_);
        close(sock_);
        sock_ = -1;
        last_connect_errno_ = err;
        connect_next();
        return;
      }
      session_ = libssh2_session_init_ex(nullptr, nullptr, nullptr, this);
      if (!session_) return fail(absl::ResourceExhaustedError(absl::StrCat(s_.target, ": no memory for a session")));
      libssh2_session_set_blocking(session_, 0);
      if (s_.compression) libssh2_session_flag(session_, LIBSSH2_FLAG_COMPRESS, 1);
      phase_ = Phase::kHandshake;
    }
    for (;;) {
      int rc = 0;
      switch (phase_) {
        case Phase::kHandshake:
          rc = libssh2_session_handshake(session_, sock_);
          if (rc == 0) {
            if (absl::Status s = check_host_key(); !s.ok()) return fail(s);
            phase_ = Phase::kAuthList;
          }
          break;
        case Phase::kAuthList: {
          const char* methods = libssh2_userauth_list(session_, s_.user.data(), static_cast<unsigned>(s_.user.size()));
          if (!methods) {
            if (libssh2_userauth_authenticated(session_)) {
              phase_ = Phase::kOpen;
              continue;
            }
            rc = libssh2_session_last_errno(session_);
            break;
          }
          server_methods_ = methods;
          plan_attempts();
          phase_ = Phase::kAuth;
          continue;
        }
        case Phase::kAuth:
          if (next_attempt_ >= attempts_.size()) {
            return fail(ssh_error(SshError::kAuthFailed, s_.target,
                                  absl::StrCat("as ", s_.user, " to ", where(), "; tried ",
                                               tried_.empty() ? "nothing" : absl::StrJoin(tried_, ", "),
                                               "; the server accepts ", server_methods_)));
          }
          rc = attempts_[next_attempt_]();
          if (rc == 0) {
            phase_ = Phase::kOpen;
          } else if (rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_SEND ||
                     rc == LIBSSH2_ERROR_SOCKET_DISCONNECT) {
            return fail(session_failure(rc));
          } else if (rc != LIBSSH2_ERROR_EAGAIN) {
            ++next_attempt_;
            continue;
          }
          break;
        case Phase::kOpen:
          channel_ = libssh2_channel_open_session(session_);
          if (channel_) {
            phase_ = Phase::kExec;
          } else {
            rc = libssh2_session_last_errno(session_);
          }
          break;
        case Phase::kExec:
          rc = libssh2_channel_exec(channel_, s_.command.c_str());
          if (rc == 0) return running();
          break;
        case Phase::kRunning:
          return pump();
        case Phase::kConnect:
        case Phase::kClosed:
          return;
      }
      if (rc == LIBSSH2_ERROR_EAGAIN) return wait_socket();
      if (rc < 0) return fail(session_failure(rc));
    }
  }

  absl::Status session_failure(int rc) {
    // What the socket call under libssh2 said (pump() clears errno first),
    // or under our own flush().
    int os_error = send_errno_ != 0 ? send_errno_ : errno;
    char* msg = nullptr;
    libssh2_session_last_error(session_, &msg, nullptr, 0);
    std::string detail = absl::StrCat(where(), ": ", msg ? msg : "libssh2 error ", msg ? "" : std::to_string(rc));
    bool closed = rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
                  rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_KEX_FAILURE;
    return link_error(closed, std::move(detail), os_error);
  }

  // The socket failed under our own send (flush()).
  absl::Status send_failure() {
    return link_error(true, absl::StrCat(where(), ": ", strerror(send_errno_)), send_errno_);
  }

  absl::Status link_error(bool closed, std::string detail, int os_error) {
    bool silent = os_error == ETIMEDOUT || os_error == EHOSTUNREACH || os_error == ENETUNREACH;
    if (phase_ == Phase::kRunning && silent && silence_limit_ > absl::ZeroDuration()) {
      absl::StrAppend(&detail, " (no answer from the host within ", absl::FormatDuration(silence_limit_), ")");
    }
    if (closed) return ssh_error(SshError::kClosed, s_.target, detail);
    return absl::UnavailableError(absl::StrCat(s_.target, ": ", detail));
  }

  absl::Status check_host_key() {
    size_t len = 0;
    int type = 0;
    const char* key = libssh2_session_hostkey(session_, &len, &type);
    if (!key) return absl::UnavailableError(absl::StrCat(s_.target, ": the server sent no host key"));
    if (s_.check == HostKeyCheck::kIgnore) return absl::OkStatus();
    LIBSSH2_KNOWNHOSTS* kh = libssh2_knownhost_init(session_);
    // Line by line: libssh2's readfile stops at the first line it cannot
    // parse (a key type it does not know), hiding every entry after it.
    for (const std::string& f : s_.known_hosts_files) {
      std::ifstream in(f);
      std::string line;
      while (std::getline(in, line)) {
        line += '\n';
        libssh2_knownhost_readline(kh, line.data(), line.size(), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
      }
    }
    int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | known_host_key_bits(type);
    int r = libssh2_knownhost_checkp(kh, s_.host.c_str(), s_.port, key, len, mask, nullptr);
    libssh2_knownhost_free(kh);
    std::string entry = s_.port == 22 ? s_.host : absl::StrCat("[", s_.host, "]:", s_.port);
    std::string files = absl::StrJoin(s_.known_hosts_files, ", ");
    if (r == LIBSSH2_KNOWNHOST_CHECK_MATCH) return absl::OkStatus();
    if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
      return ssh_error(SshError::kHostKeyMismatch, s_.target,
                       absl::StrCat("the ", key_type_name(type), " key of ", entry, " differs from the one in ", files,
                                    " (someone may be intercepting the connection)"));
    }
    if (r == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && s_.check == HostKeyCheck::kAcceptNew &&
        !s_.known_hosts_files.empty()) {
      std::ofstream out(s_.known_hosts_files.front(), std::ios::app);
      out << entry << " " << key_type_name(type) << " "
          << absl::Base64Escape(absl::string_view(key, len)) << "\n";
      if (out.good()) return absl::OkStatus();
      return absl::FailedPreconditionError(
          absl::StrCat(s_.target, ": cannot record the new host key in ", s_.known_hosts_files.front()));
    }
    return ssh_error(SshError::kHostKeyUnknown, s_.target,
                     absl::StrCat("no ", key_type_name(type), " key for ", entry, " in ",
                                  files.empty() ? "(no known_hosts file)" : files));
  }

  bool server_accepts(const char* method) const { return server_methods_.find(method) != std::string::npos; }

  void plan_attempts() {
    const char* user = s_.user.c_str();
    unsigned ulen = static_cast<unsigned>(s_.user.size());
    if (server_accepts("publickey")) {
      for (const std::string& key : s_.identity_files) {
        if (!file_exists(key)) continue;
        std::string pub = key + ".pub";
        bool has_pub = file_exists(pub);
        attempts_.push_back([this, key, pub, has_pub, user, ulen] {
          int rc = libssh2_userauth_publickey_fromfile_ex(session_, user, ulen, has_pub ? pub.c_str() : nullptr,
                                                          key.c_str(), s_.passphrase.c_str());
          if (rc != LIBSSH2_ERROR_EAGAIN) tried_.push_back(absl::StrCat("key ", key));
          return rc;
        });
      }
      if (!s_.identities_only && getenv("SSH_AUTH_SOCK")) plan_agent();
    }
    if (!s_.password.empty() && server_accepts("password")) {
      attempts_.push_back([this, user, ulen] {
        int rc = libssh2_userauth_password_ex(session_, user, ulen, s_.password.c_str(),
                                              static_cast<unsigned>(s_.password.size()), nullptr);
        if (rc != LIBSSH2_ERROR_EAGAIN) tried_.push_back("password");
        return rc;
      });
    }
    if (!s_.password.empty() && server_accepts("keyboard-interactive")) {
      attempts_.push_back([this, user, ulen] {
        int rc = libssh2_userauth_keyboard_interactive_ex(session_, user, ulen, &Libssh2Link::answer_prompts);
        if (rc != LIBSSH2_ERROR_EAGAIN) tried_.push_back("keyboard-interactive");
        return rc;
      });
    }
  }

  // ssh-agent: listing identities talks to a local socket, quickly; the
  // signatures then travel over the non-blocking session.
  void plan_agent() {
    agent_ = libssh2_agent_init(session_);
    if (!agent_ || libssh2_agent_connect(agent_) != 0 || libssh2_agent_list_identities(agent_) != 0) return;
    libssh2_agent_publickey* id = nullptr;
    while (libssh2_agent_get_identity(agent_, &id, id) == 0) {
      attempts_.push_back([this, id] {
        int rc = libssh2_agent_userauth(agent_, s_.user.c_str(), id);
        if (rc != LIBSSH2_ERROR_EAGAIN) tried_.push_back(absl::StrCat("agent key ", id->comment ? id->comment : ""));
        return rc;
      });
    }
  }

  static void answer_prompts(const char*, int, const char*, int, int num_prompts,
                             const LIBSSH2_USERAUTH_KBDINT_PROMPT*, LIBSSH2_USERAUTH_KBDINT_RESPONSE* responses,
                             void** abstract) {
    auto* self = static_cast<Libssh2Link*>(*abstract);
    for (int i = 0; i < num_prompts; ++i) {
      responses[i].text = strdup(self->s_.password.c_str());
      responses[i].length = static_cast<unsigned>(self->s_.password.size());
    }
  }

  void wait_socket() {
    int dirs = libssh2_session_block_directions(session_);
    broker()->set_interest(sock_, (dirs & LIBSSH2_SESSION_BLOCK_INBOUND) || phase_ == Phase::kRunning,
                           (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND) != 0);
  }

  // libssh2's send function while running: takes every packet whole into
  // out_, so that libssh2 never holds one back half-sent (a packet it
  // held would wait for its next send, and be lost if the link closed
  // first). pump() bounds out_ by not writing to the channel while it
  // holds kSendBatch bytes, so a packet always finds room (the
  // static_assert above); were it not so, libssh2 would keep the packet
  // and send it again later, as with a full socket.
  static ssize_t batch_send(libssh2_socket_t, const void* buf, size_t n, int, void** abstract) {
    auto* self = static_cast<Libssh2Link*>(*abstract);
    if (self->send_errno_ != 0) return -self->send_errno_;
    auto [at, room] = self->out_.space();
    if (room < n) return -EAGAIN;
    memcpy(at, buf, n);
    self->out_.commit(n);
    return static_cast<ssize_t>(n);
  }

  // Writes what out_ holds until the socket is full; an error stays in
  // send_errno_ for libssh2's next send, and for pump().
  void flush() {
    while (!out_.empty() && send_errno_ == 0) {
      ssize_t w = send(sock_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (w > 0) {
        out_.consume(static_cast<size_t>(w));
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else {
        if (w < 0 && errno != EAGAIN) send_errno_ = errno;
        break;
      }
    }
  }

  void running() {
    phase_ = Phase::kRunning;
    libssh2_session_callback_set(session_, LIBSSH2_CALLBACK_SEND, reinterpret_cast<void*>(&batch_send));
    if (connect_timer_) broker()->cancel_timer(connect_timer_);
    connect_timer_ = 0;
    if (agent_) {
      libssh2_agent_disconnect(agent_);
      libssh2_agent_free(agent_);
      agent_ = nullptr;
    }
    broker()->watch(local_, true, false, [self = shared_from_this()](const PollEvent&) { self->pump(); });
    local_watched_ = true;
    if (s_.keepalive_interval > absl::ZeroDuration()) set_tcp_keepalive();
    started_->put(absl::OkStatus());
    pump();
  }

  // A peer that stopped answering (a dead host, a cut cable) must close the
  // link, so that its callers wake instead of waiting on a silent TCP
  // connection. The probes are TCP's, not SSH's: libssh2 1.10 queues the
  // server's reply to each of its keepalive requests and never frees it, a
  // leak that every later channel read walks past. The kernel probes an
  // idle connection every interval, and TCP_USER_TIMEOUT bounds how long
  // sent data (probes included) may go unacknowledged: after interval x
  // (count + 1) the socket fails with ETIMEDOUT and the link closes. (With
  // TCP_USER_TIMEOUT set, the kernel goes by it rather than TCP_KEEPCNT.)
  // What this does not see is an sshd that hangs on a live host.
  void set_tcp_keepalive() {
    constexpr int64_t kMaxProbeSeconds = 32767;  // the kernel's limit for TCP_KEEPIDLE and TCP_KEEPINTVL
    int64_t interval_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(s_.keepalive_interval));
    int interval = static_cast<int>(std::clamp<int64_t>((interval_ms + 999) / 1000, 1, kMaxProbeSeconds));
    int count = std::max(1, s_.keepalive_count_max);
    silence_limit_ = absl::Milliseconds(interval_ms) * (count + 1);
    unsigned user_timeout_ms =
        static_cast<unsigned>(std::min<int64_t>(absl::ToInt64Milliseconds(silence_limit_), UINT32_MAX));
    int one = 1;
    setsockopt(sock_, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(sock_, IPPROTO_TCP, TCP_KEEPIDLE, &interval, sizeof interval);
    setsockopt(sock_, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(sock_, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    setsockopt(sock_, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  }

  // Bytes of channel data (either stream) that libssh2 holds in its own
  // queue. Any libssh2 call may read packets off the socket (the stderr
  // read can take a reply just after the stdout read found nothing), and
  // the socket does not wake us again for those.
  size_t queued_in_libssh2() {
    unsigned long queued = 0;
    libssh2_channel_window_read_ex(channel_, &queued, nullptr);
    return queued;
  }

  // Moves bytes both ways until nothing moves, then sets the interests.
  void pump() {
    if (phase_ != Phase::kRunning) return;
    bool moved = true;
    bool rechecked = false;  // the last pass ran only because data was queued in libssh2
    bool blocked_out = false;
    while (moved && phase_ == Phase::kRunning) {
      moved = false;
      errno = 0;  // so that session_failure() reads this pass's socket error, not an old one
      // Remote to local.
      if (auto [at, room] = to_local_.space(); room > 0) {
        ssize_t n = libssh2_channel_read(channel_, at, room);
        if (n > 0) {
          to_local_.commit(static_cast<size_t>(n));
          moved = true;
        } else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) {
          return close_all(session_failure(static_cast<int>(n)).ToString());
        }
      }
      char err[4096];
      ssize_t e = libssh2_channel_read_stderr(channel_, err, sizeof err);
      if (e > 0) {
        moved = true;
        if (diag_ >= 0 && write(diag_, err, static_cast<size_t>(e)) < 0 && errno != EAGAIN) {
          close(diag_);
          diag_ = -1;
        }
      } else if (e < 0 && e != LIBSSH2_ERROR_EAGAIN) {
        return close_all(session_failure(static_cast<int>(e)).ToString());
      }
      if (!to_local_.empty()) {
        ssize_t w = send(local_, to_local_.data(), to_local_.size(), MSG_NOSIGNAL);
        if (w > 0) {
          to_local_.consume(static_cast<size_t>(w));
          moved = true;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          return close_all("the local end closed");
        }
      }
      // The agent exited: after a shutdown that is the normal end, and
      // otherwise the router reports the context gone; a line on its
      // stderr would only repeat that (the OpenSSH transport adds none).
      if (to_local_.empty() && libssh2_channel_eof(channel_)) return close_all("");
      // Local to remote.
      if (auto [at, room] = to_remote_.space(); !local_eof_ && room > 0) {
        ssize_t r = recv(local_, at, room, 0);
        if (r > 0) {
          to_remote_.commit(static_cast<size_t>(r));
          moved = true;
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          local_eof_ = true;
        }
      }
      // A channel write sends one packet; sending the whole backlog before
      // the next pass's reads saves the two reads (each a recv() that finds
      // nothing) that a pass per packet costs. Data that arrives meanwhile
      // waits in libssh2's queue for that next pass.
      while (!to_remote_.empty()) {
        if (out_.size() >= kSendBatch) flush();
        if (out_.size() >= kSendBatch) {
          blocked_out = true;
          break;
        }
        ssize_t w = libssh2_channel_write(channel_, to_remote_.data(), to_remote_.size());
        if (w > 0) {
          to_remote_.consume(static_cast<size_t>(w));
          moved = true;
          continue;
        }
        if (w == LIBSSH2_ERROR_EAGAIN) {
          blocked_out = true;
        } else if (w < 0) {
          return close_all(session_failure(static_cast<int>(w)).ToString());
        }
        break;
      }
      flush();
      if (send_errno_ != 0) return close_all(send_failure().ToString());
      // Closed only once all of it has left: the last frames (a shutdown,
      // a last call) must reach the agent.
      if (local_eof_ && to_remote_.empty() && out_.empty()) return close_all("the context's stream closed");
      // One more pass for data libssh2 queued during this one; never two
      // in a row that move nothing, so data no read takes cannot spin us.
      if (moved) {
        rechecked = false;
      } else if (!rechecked && to_local_.space().second > 0 && queued_in_libssh2() > 0) {
        moved = rechecked = true;
      }
    }
    int dirs = libssh2_session_block_directions(session_);
    broker()->set_interest(sock_, true, blocked_out || !out_.empty() || (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND));
    broker()->set_interest(local_, !local_eof_ && to_remote_.size() < kPumpBuffer, !to_local_.empty());
  }

  void fail(absl::Status why) {
    if (started_) started_->put(std::move(why));
    close_all("");
  }

  // Broker thread. Stops watching (the handlers held the last references,
  // so the link goes once the current one returns) and frees the session.
  // `reason` goes to the stderr pipe, so that it reaches the master as the
  // context's last log line (or the bootstrap's error text).
  void close_all(const std::string& reason) {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    if (!reason.empty() && diag_ >= 0) {
      std::string line = absl::StrCat("spindle: ", reason, "\n");
      (void)!write(diag_, line.data(), line.size());
    }
    if (connect_timer_) broker()->cancel_timer(connect_timer_);
    connect_timer_ = 0;
    if (sock_ >= 0) broker()->unwatch(sock_);
    if (local_watched_) broker()->unwatch(local_);
    release();
  }

  // Tears the session down without blocking: the socket is shut down first,
  // so libssh2's goodbye cannot wait on a silent peer, and the descriptor
  // stays ours until libssh2 is done with it.
  void release() {
    if (channel_) libssh2_channel_send_eof(channel_);
    if (sock_ >= 0) {
      flush();  // as far as the socket takes it without waiting
      shutdown(sock_, SHUT_RDWR);
    }
    if (agent_) libssh2_agent_free(agent_);
    if (channel_) libssh2_channel_free(channel_);
    if (session_) libssh2_session_free(session_);
    agent_ = nullptr;
    channel_ = nullptr;
    session_ = nullptr;
    for (int* fd : {&sock_, &local_, &diag_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }

  Broker::Share home_;
  Settings s_;
  std::vector<sockaddr_storage> addrs_;
  size_t next_addr_ = 0;
  int last_connect_errno_ = ECONNREFUSED;
  int sock_ = -1;
  int local_;  // our end of the socketpair to the bootstrap and Stream
  int diag_;   // write end of the stderr pipe
  Phase phase_ = Phase::kConnect;
  LIBSSH2_SESSION* session_ = nullptr;
  LIBSSH2_CHANNEL* channel_ = nullptr;
  LIBSSH2_AGENT* agent_ = nullptr;
  std::string server_methods_;
  std::vector<Attempt> attempts_;
  size_t next_attempt_ = 0;
  std::vector<std::string> tried_;
  std::shared_ptr<Latch<absl::Status>> started_;
  Broker::TimerId connect_timer_ = 0;
  PumpBuffer to_local_;
  PumpBuffer to_remote_;
  bool local_eof_ = false;
  bool local_watched_ = false;
  PumpBuffer out_;      // libssh2's packets not yet sent (see batch_send)
  int send_errno_ = 0;  // the socket's send error, once there is one
  absl::Duration silence_limit_;  // zero: no keepalives
};

absl::StatusOr<Settings> resolve_settings(const SshOptions& o, const std::string& target,
                                          const std::string& command) {
  std::string config_path = o.config_file.empty() ? expand_ssh_path("~/.ssh/config", "", 0, "") : o.config_file;
  absl::StatusOr<SshHostConfig> cfg = read_ssh_config(config_path, o.hostname);
  if (!cfg.ok()) return cfg.status();
  Settings s;
  s.target = target;
  s.host = cfg->hostname;
  s.port = o.port ? o.port : cfg->port.value_or(22);
  s.user = !o.user.empty() ? o.user : cfg->user.value_or(local_user_name());
  auto expand = [&](const std::string& p) { return expand_ssh_path(p, s.host, s.port, s.user); };
  // As with ssh -i: the given file first, then the configured ones.
  if (!o.identity_file.empty()) s.identity_files.push_back(expand(o.identity_file));
  for (const std::string& f : cfg->identity_files) s.identity_files.push_back(expand(f));
  if (s.identity_files.empty()) {
    for (const char* f : {"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"}) s.identity_files.push_back(expand(f));
  }
  s.identities_only = cfg->identities_only.value_or(false);
  if (!o.known_hosts_file.empty()) {
    s.known_hosts_files = {expand(o.known_hosts_file)};
  } else if (!cfg->known_hosts_files.empty()) {
    for (const std::string& f : cfg->known_hosts_files) s.known_hosts_files.push_back(expand(f));
  } else {
    s.known_hosts_files = {expand("~/.ssh/known_hosts"), expand("~/.ssh/known_hosts2")};
  }
  s.check = o.check_host_keys;
  s.password = o.password;
  s.passphrase = o.identity_passphrase;
  s.compression = o.compression || cfg->compression.value_or(false);
  s.connect_timeout = o.connect_timeout;
  s.keepalive_interval = o.keepalive_interval;
  s.keepalive_count_max = o.keepalive_count_max;
  s.command = command;
  return s;
}

}  // namespace

absl::StatusOr<Connection> libssh2_connect(Router* router, const SshOptions& o, const std::string& target,
                                           const std::string& script, absl::Time deadline) {
  global_init();
  absl::StatusOr<Settings> s = resolve_settings(o, target, remote_command(script));
  if (!s.ok()) return s.status();
  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  struct addrinfo* res = nullptr;
  int gai = getaddrinfo(s->host.c_str(), std::to_string(s->port).c_str(), &hints, &res);
  if (gai != 0) {
    return ssh_error(SshError::kUnknownHost, target, absl::StrCat(s->host, ": ", gai_strerror(gai)));
  }
  std::vector<sockaddr_storage> addrs;
  for (struct addrinfo* a = res; a; a = a->ai_next) {
    sockaddr_storage ss = {};
    memcpy(&ss, a->ai_addr, std::min<size_t>(a->ai_addrlen, sizeof ss));
    addrs.push_back(ss);
  }
  freeaddrinfo(res);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::UnavailableError(absl::StrCat(target, ": socketpair: ", strerror(errno)));
  }
  // Room for a whole chunk of a push (about 0.5 MiB): the caller's thread
  // then writes it at once, where the default (208 KiB) left the rest to
  // the broker, a tenth of its time in a push. The kernel caps it at twice
  // net.core.wmem_max (416 KiB with Debian's default); no harm if so.
  int sndbuf = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  int diag[2];
  if (pipe2(diag, O_NONBLOCK | O_CLOEXEC) != 0) {
    close(sv[0]);
    close(sv[1]);
    return absl::UnavailableError(absl::StrCat(target, ": pipe: ", strerror(errno)));
  }
  Broker::Share home = router->broker()->share();
  Broker* broker = home.broker();
  auto link = std::make_shared<Libssh2Link>(std::move(home), *std::move(s), std::move(addrs), sv[1], diag[1]);
  auto started = std::make_shared<Latch<absl::Status>>();
  broker->defer([link, started] { link->start(started); });
  absl::StatusOr<absl::Status> outcome = started->get(std::max(deadline - absl::Now(), absl::ZeroDuration()));
  absl::Status status = outcome.ok() ? *outcome : ssh_error(SshError::kTimeout, target, "no answer in time");
  if (!status.ok()) {
    close(sv[0]);  // the link, if still alive, sees EOF and goes
    close(diag[0]);
    return status;
  }
  Connection c;
  c.data = sv[0];
  c.diag = diag[0];
  return c;
}

}  // namespace spindle
