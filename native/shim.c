// strand-shim: the CNI plugin executables of an installed strand (strand-bridge,
// strand-macvlan, strand-ipvlan, strand-ipam are hardlinks of this file). A container
// runtime starts one per CNI call; it hands the call to the resident `strand daemon`
// over a unix socket and prints the daemon's answer, so the runtime gets exactly what
// the standalone plugin would print, without starting Node.
//
// The protocol is daemon/protocol.ts (frames, limits) and docs/daemon.md. In short:
// send one REQUEST (plugin name from argv[0], the environment the plugins read, stdin,
// and descriptors over SCM_RIGHTS: this process's network and mount namespaces, and
// CNI_NETNS opened here in the runtime's mount namespace), wait for STARTED, then for
// RESULT (exit status, stdout, stderr).
//
// Started as `strand-nsexec NETFD MNTFD FILE [ARG...]` (by the daemon) it is instead the
// daemon's way to run a delegate or a tool where the runtime would have: it enters the
// mount namespace MNTFD and the network namespace NETFD (inherited descriptors, -1 to
// keep the current one) and execs FILE, so iptables, nft and delegates are the node's
// own, whatever the daemon's container holds.
//
// Fallback: when the daemon cannot take the call (no socket, refused, not root, BUSY,
// UNSUPPORTED, REJECTED, closed before STARTED, a request over a limit) this program
// execs the standalone executable `strand` from its own directory under the same
// plugin name, with stdin intact (untouched, or replayed from a memfd once read). After
// STARTED the call is never run twice: a daemon that dies or misses the reply deadline
// is CNI error 999 naming the daemon, and the runtime's DEL after the failed ADD cleans
// up.
//
// Environment: STRAND_DAEMON_SOCKET (default /run/strand/cni.sock),
// STRAND_SHIM_TIMEOUT (reply deadline in seconds, default 90, below the kubelet's
// 2-minute runtime request timeout that bounds containerd's and CRI-O's CNI calls),
// STRAND_SHIM_ACK_TIMEOUT (seconds to wait for STARTED, default 5),
// STRAND_SHIM_REQUIRE_DAEMON=1 (a call the daemon could serve fails with 999 instead of
// running standalone when the daemon does not take it: tests of the daemon path),
// STRAND_SHIM_DEBUG=1 (say on stderr which path was taken).
//
// Static, no dependencies beyond libc (musl); memory is the stdin buffer, the request
// and one 64 KiB buffer.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SHIM_PROTOCOL_VERSION
#define SHIM_PROTOCOL_VERSION 1
#endif
#ifndef STRAND_BUILD
#define STRAND_BUILD "dev"
#endif

// Limits: the same as daemon/protocol.ts LIMITS. A network config over LIMIT_STDIN goes
// to the standalone executable, which reads up to PLUGIN_STDIN_LIMIT (lib/cni/skel.ts).
#define LIMIT_PLUGIN 64
#define LIMIT_ENV_COUNT 512
#define LIMIT_ENV_ENTRY (32 * 1024)
#define LIMIT_ENV_TOTAL (256 * 1024)
#define LIMIT_STDIN (1024 * 1024)
#define PLUGIN_STDIN_LIMIT (64 * 1024 * 1024)

#define HEADER_SIZE 16
enum { K_REQUEST = 1, K_STARTED = 2, K_RESULT = 3, K_BUSY = 4, K_UNSUPPORTED = 5, K_REJECTED = 6 };
enum { F_STDIN_NOT_READ = 1 };
enum { NS_UNSET = 0, NS_PASSED = 1, NS_OPEN_FAILED = 2 };

#define DEFAULT_SOCKET "/run/strand/cni.sock"
#define DEFAULT_TIMEOUT_S 90
#define DEFAULT_ACK_TIMEOUT_S 5

// Found by the daemon in this file: a shim of the same build runs in-process there.
#define STR_(x) #x
#define STR(x) STR_(x)
__attribute__((used)) static const char build_marker[] = "STRAND-SHIM protocol=" STR(SHIM_PROTOCOL_VERSION) " build=" STRAND_BUILD "\n";

extern char **environ;

static const char *plugin = "strand-shim";
static const char *sock_path = DEFAULT_SOCKET;
static int debug;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...) {
  if (!debug) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  dprintf(2, "strand-shim %s: %s\n", plugin, line);
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int env_seconds(const char *name, int dflt) {
  const char *v = getenv(name);
  if (!v || !*v) return dflt;
  char *end;
  long n = strtol(v, &end, 10);
  return (*end || n <= 0 || n > 86400) ? dflt : (int)n;
}

// Writes all of buf to fd (blocking, or waiting on a non-blocking descriptor).
static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, -1);
        continue;
      }
      return;  // no reader (EPIPE) or no descriptor: nobody to tell
    }
    buf += n;
    len -= (size_t)n;
  }
}

// JSON string escaping of a short ASCII/UTF-8 text into out (always terminated).
static void json_escape(char *out, size_t cap, const char *s) {
  size_t o = 0;
  for (; *s && o + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') o += (size_t)snprintf(out + o, cap - o, "\\%c", c);
    else if (c < 0x20) o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
    else out[o++] = (char)c;
  }
  out[o] = 0;
}

// The CNI error a runtime reads when the daemon took the call and failed to answer.
static _Noreturn void fail_999(const char *msg, const char *details) {
  char m[1024], d[1024], out[2304];
  json_escape(m, sizeof m, msg);
  json_escape(d, sizeof d, details);
  int n = snprintf(out, sizeof out, "{\n    \"cniVersion\": \"1.1.0\",\n    \"code\": 999,\n    \"msg\": \"%s\",\n    \"details\": \"%s\"\n}\n", m, d);
  if (n > 0) write_all(1, out, (size_t)n < sizeof out ? (size_t)n : sizeof out - 1);
  dprintf(2, "strand-shim %s: %s: %s\n", plugin, msg, details);
  exit(1);
}

// ---- fallback ------------------------------------------------------------------------

static char *stdin_buf;
static size_t stdin_len;
static int stdin_consumed;  // stdin was read: replay it from a memfd
static int stdin_more;      // and not to its end (over LIMIT_STDIN): the rest follows in the memfd

// Runs the standalone executable <own directory>/strand as `plugin`, stdin intact.
// `daemon_refused`: the daemon could have served the call and did not (absent, busy...);
// otherwise the call is one the protocol does not carry (not root, over a limit).
static _Noreturn void fallback_why(const char *why, int daemon_refused) {
  if (daemon_refused && getenv("STRAND_SHIM_REQUIRE_DAEMON") && strcmp(getenv("STRAND_SHIM_REQUIRE_DAEMON"), "1") == 0) {
    char d[PATH_MAX + 128];
    snprintf(d, sizeof d, "%s (socket %s); STRAND_SHIM_REQUIRE_DAEMON=1", why, sock_path);
    fail_999("strand daemon did not take the call", d);
  }
  say("fallback: %s", why);
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
  if (n <= 0) fail_999("cannot find the strand executable", "readlink /proc/self/exe failed");
  exe[n] = 0;
  // A shim replaced by an upgrade while running reads "<path> (deleted)": same directory.
  char *slash = strrchr(exe, '/');
  if (!slash) fail_999("cannot find the strand executable", exe);
  strcpy(slash + 1, "strand");
  if (stdin_consumed) {
    int mfd = memfd_create("strand-stdin", MFD_CLOEXEC);
    if (mfd < 0) fail_999("cannot replay stdin to the standalone plugin", "memfd_create failed");
    write_all(mfd, stdin_buf, stdin_len);
    // The rest, up to one byte over what the plugin reads (it rejects that as it would).
    static char chunk[65536];
    for (size_t total = stdin_len; stdin_more && total <= PLUGIN_STDIN_LIMIT;) {
      ssize_t n = read(0, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        poll(&p, 1, -1);
        continue;
      }
      if (n <= 0) break;
      write_all(mfd, chunk, (size_t)n);
      total += (size_t)n;
    }
    if (lseek(mfd, 0, SEEK_SET) < 0 || dup2(mfd, 0) < 0) fail_999("cannot replay stdin to the standalone plugin", "dup2 failed");
    close(mfd);
  }
  char *args[] = {(char *)plugin, NULL};
  execve(exe, args, environ);
  char d[PATH_MAX + 64];
  snprintf(d, sizeof d, "exec %s: %s", exe, strerror(errno));
  fail_999("cannot run the standalone strand executable", d);
}

// The daemon could not or would not take the call.
static _Noreturn void fallback(const char *why) { fallback_why(why, 1); }
// The protocol does not carry this call.
static _Noreturn void standalone(const char *why) { fallback_why(why, 0); }

// ---- request -------------------------------------------------------------------------

static int forwarded(const char *e) {
  return strncmp(e, "CNI_", 4) == 0 || strncmp(e, "STRAND_", 7) == 0 || strncmp(e, "PATH=", 5) == 0 || strncmp(e, "K8S_NODE_NAME=", 14) == 0 ||
         strncmp(e, "NODENAME=", 9) == 0;
}

static int reads_stdin(const char *cmd) {
  return cmd && (strcmp(cmd, "ADD") == 0 || strcmp(cmd, "DEL") == 0 || strcmp(cmd, "CHECK") == 0 || strcmp(cmd, "STATUS") == 0 || strcmp(cmd, "GC") == 0);
}

// Reads stdin to its end, or to one byte over LIMIT_STDIN: returns 1 then (more to come).
static int read_stdin(void) {
  size_t cap = 4096;
  stdin_buf = malloc(cap);
  if (!stdin_buf) fail_999("out of memory", "reading stdin");
  stdin_consumed = 1;
  for (;;) {
    if (stdin_len == cap) {
      if (cap > LIMIT_STDIN) return stdin_more = 1;
      cap = cap * 2 > LIMIT_STDIN + 1 ? LIMIT_STDIN + 1 : cap * 2;
      char *nb = realloc(stdin_buf, cap);
      if (!nb) fail_999("out of memory", "reading stdin");
      stdin_buf = nb;
    }
    ssize_t n = read(0, stdin_buf + stdin_len, cap - stdin_len);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        poll(&p, 1, -1);
        continue;
      }
      if (errno == EBADF) return 0;  // no stdin at all, as the standalone plugin treats it
      fail_999("error reading from stdin", strerror(errno));
    }
    stdin_len += (size_t)n;
  }
}

typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) fail_999("out of memory", "building the request");
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void put_u32(buf_t *b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  put(b, x, 4);
}

static void put_u16(buf_t *b, uint16_t v) {
  unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
  put(b, x, 2);
}

static void put_bytes(buf_t *b, const void *data, size_t n) {
  put_u32(b, (uint32_t)n);
  put(b, data, n);
}

static uint32_t get_u32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

// ---- connection ----------------------------------------------------------------------

static int conn = -1;
static int started;  // STARTED received: from here on, never fall back

// Waits until fd is ready for `events` or the deadline passes (returns 0 then).
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return 0;
  }
}

// Reads exactly n bytes before the deadline. Returns 1, 0 on EOF, -1 on error, -2 on timeout.
static int read_full(void *buf, size_t n, int64_t deadline) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(conn, (char *)buf + got, n - got, MSG_DONTWAIT);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0) return 0;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -1;
    if (!wait_fd(conn, POLLIN, deadline)) return -2;
  }
  return 1;
}

// After giving up on STARTED: shut the connection (from now on the daemon can neither
// read more nor send STARTED), then look at what it had already sent. A STARTED in
// there means the request runs; otherwise it never will, and falling back is safe.
static int started_before_cancel(void) {
  shutdown(conn, SHUT_RDWR);
  unsigned char h[HEADER_SIZE];
  ssize_t r = recv(conn, h, sizeof h, MSG_DONTWAIT);
  return r == HEADER_SIZE && memcmp(h, "STRD", 4) == 0 && (h[6] | h[7] << 8) == K_STARTED;
}

// Copies n bytes of the reply to fd (stdout or stderr) as they arrive.
static void relay(int fd, uint32_t n, int64_t deadline, char *chunk, size_t chunk_size) {
  while (n > 0) {
    size_t want = n < chunk_size ? n : chunk_size;
    int r = read_full(chunk, want, deadline);
    if (r == -2) fail_999("strand daemon did not answer in time", "the reply stopped arriving before the deadline (STRAND_SHIM_TIMEOUT)");
    if (r != 1) fail_999("strand daemon failed during the request", "the connection closed in the middle of the reply");
    write_all(fd, chunk, want);
    n -= (uint32_t)want;
  }
}

// strand-nsexec NETFD MNTFD FILE [ARG...]: see the top of the file. Exits 126 (127 when
// FILE is missing) with "strand-nsexec: failed to execute FILE: <strerror>" when the exec
// fails, as nsenter(1) does, so the daemon can report the error spawn() would have.
// With `--which NAME` instead of FILE: prints the first executable NAME on $PATH as the
// caller's mount namespace has it (exit 1 when there is none).
static int which(const char *name) {
  const char *path = getenv("PATH");
  char full[PATH_MAX];
  for (const char *p = path ? path : ""; *p;) {
    const char *end = strchr(p, ':');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 0 && n + strlen(name) + 2 <= sizeof full) {
      memcpy(full, p, n);
      full[n] = '/';
      strcpy(full + n + 1, name);
      struct stat st;
      if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0) {
        dprintf(1, "%s\n", full);
        return 0;
      }
    }
    p += n;
    if (*p == ':') p++;
  }
  return 1;
}

static int nsexec(int argc, char **argv) {
  if (argc < 4 || (strcmp(argv[3], "--which") == 0 && argc != 5)) {
    dprintf(2, "usage: strand-nsexec NETFD MNTFD FILE [ARG...] | strand-nsexec NETFD MNTFD --which NAME\n");
    return 2;
  }
  int netfd = atoi(argv[1]), mntfd = atoi(argv[2]);
  // mount first: entering it resets the root and working directory to its root
  if (mntfd >= 0 && setns(mntfd, CLONE_NEWNS) < 0) {
    dprintf(2, "strand-nsexec: setns(mount): %s\n", strerror(errno));
    return 125;
  }
  if (netfd >= 0 && setns(netfd, CLONE_NEWNET) < 0) {
    dprintf(2, "strand-nsexec: setns(net): %s\n", strerror(errno));
    return 125;
  }
  if (mntfd >= 0) close(mntfd);
  if (netfd >= 0) close(netfd);
  if (strcmp(argv[3], "--which") == 0) return which(argv[4]);
  execv(argv[3], argv + 3);
  int e = errno;
  dprintf(2, "strand-nsexec: failed to execute %s: %s\n", argv[3], strerror(e));
  return e == ENOENT ? 127 : 126;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argv[0] && *argv[0]) {
    const char *slash = strrchr(argv[0], '/');
    plugin = slash ? slash + 1 : argv[0];
  }
  if (strcmp(plugin, "strand-nsexec") == 0) return nsexec(argc, argv);
  debug = getenv("STRAND_SHIM_DEBUG") && strcmp(getenv("STRAND_SHIM_DEBUG"), "1") == 0;
  if (getenv("STRAND_DAEMON_SOCKET") && *getenv("STRAND_DAEMON_SOCKET")) sock_path = getenv("STRAND_DAEMON_SOCKET");
  int64_t t0 = now_ms();
  int64_t reply_ms = (int64_t)env_seconds("STRAND_SHIM_TIMEOUT", DEFAULT_TIMEOUT_S) * 1000;
  int64_t ack_ms = (int64_t)env_seconds("STRAND_SHIM_ACK_TIMEOUT", DEFAULT_ACK_TIMEOUT_S) * 1000;

  // Decisions that leave stdin untouched come first.
  if (geteuid() != 0) standalone("not root");
  if (strlen(plugin) > LIMIT_PLUGIN) standalone("plugin name too long");
  const char *cmd = getenv("CNI_COMMAND");
  int want_stdin = reads_stdin(cmd);
  if (want_stdin && isatty(0)) standalone("stdin is a terminal");

  buf_t body = {0};
  size_t env_count = 0, env_total = 0;
  for (char **e = environ; *e; e++) {
    if (!forwarded(*e)) continue;
    size_t n = strlen(*e);
    env_count++;
    env_total += n;
    if (n > LIMIT_ENV_ENTRY || env_count > LIMIT_ENV_COUNT || env_total > LIMIT_ENV_TOTAL) standalone("environment over the protocol's limits");
  }

  // The caller's network namespace (the plugin's "host") and mount namespace (where its
  // tools and delegates are), and CNI_NETNS opened here, in the runtime's mount
  // namespace. O_PATH: opening has no side effect on whatever the path names; the
  // daemon reopens it through /proc/self/fd as the plugin would.
  int fds[3], nfds = 0;
  fds[nfds] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fds[nfds] < 0) fallback("cannot open /proc/self/ns/net");
  nfds++;
  fds[nfds] = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  if (fds[nfds] < 0) fallback("cannot open /proc/self/ns/mnt");
  nfds++;
  uint32_t ns_state = NS_UNSET, ns_errno = 0;
  const char *netns = getenv("CNI_NETNS");
  if (netns && *netns) {
    int fd = open(netns, O_PATH | O_CLOEXEC);
    if (fd >= 0) {
      fds[nfds++] = fd;
      ns_state = NS_PASSED;
    } else {
      ns_state = NS_OPEN_FAILED;
      ns_errno = (uint32_t)errno;
    }
  }

  conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (conn < 0) fallback("socket() failed");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof sa.sun_path) fallback("socket path too long");
  strcpy(sa.sun_path, sock_path);
  if (connect(conn, (struct sockaddr *)&sa, sizeof sa) < 0) {
    // ENOENT: no daemon; ECONNREFUSED: a stale socket file; EAGAIN: backlog full (busy).
    say("connect %s: %s", sock_path, strerror(errno));
    fallback("cannot connect to the daemon");
  }

  uint32_t flags = 0;
  if (!want_stdin) flags |= F_STDIN_NOT_READ;
  else if (read_stdin()) standalone("network config over the protocol's 1 MiB");

  // The request: header, then the body (built after it in the same buffer).
  put(&body, "STRD", 4);
  put_u16(&body, SHIM_PROTOCOL_VERSION);
  put_u16(&body, K_REQUEST);
  put_u32(&body, 0);  // length, filled in below
  put_u32(&body, 0);
  put_u32(&body, flags);
  put_u32(&body, ns_state);
  put_u32(&body, ns_errno);
  put_u32(&body, (uint32_t)nfds);
  put_bytes(&body, plugin, strlen(plugin));
  put_u32(&body, (uint32_t)env_count);
  for (char **e = environ; *e; e++)
    if (forwarded(*e)) put_bytes(&body, *e, strlen(*e));
  if (flags & F_STDIN_NOT_READ) put_u32(&body, 0);
  else put_bytes(&body, stdin_buf, stdin_len);
  uint32_t blen = (uint32_t)(body.len - HEADER_SIZE);
  unsigned char *lenp = (unsigned char *)body.p + 8;
  lenp[0] = (unsigned char)blen, lenp[1] = (unsigned char)(blen >> 8), lenp[2] = (unsigned char)(blen >> 16), lenp[3] = (unsigned char)(blen >> 24);

  // Send; the descriptors ride on the first bytes. A send that fails or stalls before
  // the end means the daemon cannot have started the request (it needs all of it).
  int64_t ack_deadline = t0 + ack_ms;
  size_t sent = 0;
  while (sent < body.len) {
    struct iovec iov = {.iov_base = body.p + sent, .iov_len = body.len - sent};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
      struct cmsghdr align;
      char buf[CMSG_SPACE(sizeof fds)];
    } ctl;
    if (sent == 0) {
      memset(&ctl, 0, sizeof ctl);
      msg.msg_control = ctl.buf;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
      struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
      memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n = sendmsg(conn, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && wait_fd(conn, POLLOUT, ack_deadline)) continue;
    say("send: %s", n < 0 ? strerror(errno) : "timed out");
    if (started_before_cancel()) fail_999("strand daemon did not answer in time", "the daemon started the request but stopped reading it");
    fallback("the daemon did not take the request");
  }
  for (int i = 0; i < nfds; i++) close(fds[i]);
  free(body.p);

  // STARTED (or why not), then RESULT.
  unsigned char h[HEADER_SIZE];
  int64_t reply_deadline = t0 + reply_ms;
  for (;;) {
    int r = read_full(h, sizeof h, started ? reply_deadline : ack_deadline);
    if (!started) {
      if (r == -2) {
        if (started_before_cancel()) fail_999("strand daemon did not answer in time", "the request started late and was cut off (STRAND_SHIM_ACK_TIMEOUT)");
        fallback("no STARTED before the deadline (STRAND_SHIM_ACK_TIMEOUT)");
      }
      if (r != 1) fallback("the daemon closed the connection before starting the request");
      if (memcmp(h, "STRD", 4) != 0) fallback("not a strand daemon (bad magic)");
    } else {
      if (r == -2) {
        char d[128];
        snprintf(d, sizeof d, "no reply within %lld s of the call (STRAND_SHIM_TIMEOUT)", (long long)(reply_ms / 1000));
        fail_999("strand daemon did not answer in time", d);
      }
      if (r != 1) fail_999("strand daemon failed during the request", "the connection closed after the request started (daemon stopped or restarted?); see the daemon's log");
      if (memcmp(h, "STRD", 4) != 0) fail_999("strand daemon failed during the request", "bad magic in the reply");
    }
    int kind = h[6] | h[7] << 8;
    uint32_t len = get_u32(h + 8);
    if (kind == K_STARTED && !started) {
      started = 1;
      continue;
    }
    if (!started) {
      // BUSY, UNSUPPORTED, REJECTED (or anything else): not run.
      say("daemon answered %s", kind == K_BUSY ? "BUSY" : kind == K_UNSUPPORTED ? "UNSUPPORTED" : "REJECTED");
      fallback(kind == K_BUSY ? "daemon busy" : kind == K_UNSUPPORTED ? "unsupported protocol version" : "request rejected");
    }
    if (kind != K_RESULT || len < 12) fail_999("strand daemon failed during the request", "unexpected reply frame");
    break;
  }

  // RESULT: u32 exit status, then stdout and stderr, each relayed as it arrives.
  static char chunk[65536];
  unsigned char x[4];
  if (read_full(x, 4, reply_deadline) != 1) fail_999("strand daemon failed during the request", "the reply ended early");
  uint32_t status = get_u32(x);
  for (int fd = 1; fd <= 2; fd++) {
    if (read_full(x, 4, reply_deadline) != 1) fail_999("strand daemon failed during the request", "the reply ended early");
    relay(fd, get_u32(x), reply_deadline, chunk, sizeof chunk);
  }
  say("served by the daemon (exit status %u)", status);
  return (int)(status & 0xff);
}
