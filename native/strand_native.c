// strand_native: the only native code in strand. It does what JavaScript cannot:
// open a netlink socket or a file inside another network namespace, tell whether a path
// is a network namespace, and take an advisory file lock.
//
// Every namespace-entering function enters the target namespace, does one thing and
// returns to the original namespace inside the same C call, so no JavaScript ever runs
// while this thread is in another namespace. If returning fails the process aborts:
// continuing in the wrong namespace would silently configure the wrong network.
//
// Plain N-API (node_api.h) only, so the binary is ABI-stable across Node versions.
// Errors are thrown as Error objects with `code` ("ENOENT"), `errno` (positive) and
// `syscall` properties.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <node_api.h>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif
#ifndef NS_GET_NSTYPE
#define NS_GET_NSTYPE _IO(0xb7, 0x3)
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif

#define PATH_BUF 4096

// ---- error helpers -------------------------------------------------------------------

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  const char *name = strerrorname_np(err);
  char msg[PATH_BUF + 256];
  if (path)
    snprintf(msg, sizeof msg, "%s: %s (%s '%s')", name ? name : "EUNKNOWN", strerror(err), syscall, path);
  else
    snprintf(msg, sizeof msg, "%s: %s (%s)", name ? name : "EUNKNOWN", strerror(err), syscall);
  napi_value code, message, error, errno_v, syscall_v;
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, err, &errno_v);
  napi_set_named_property(env, error, "errno", errno_v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v);
  napi_set_named_property(env, error, "syscall", syscall_v);
  if (path) {
    napi_value path_v;
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_v);
    napi_set_named_property(env, error, "path", path_v);
  }
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

// ---- argument helpers ----------------------------------------------------------------

// Reads argument `v` as a path string into buf. Returns 1 for a string, 0 for null or
// undefined (when allow_null), -1 after throwing.
static int get_path(napi_env env, napi_value v, char *buf, int allow_null, const char *what) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (allow_null && (t == napi_null || t == napi_undefined)) return 0;
  if (t != napi_string) {
    throw_type(env, what);
    return -1;
  }
  size_t len;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  if (len == 0 || len >= PATH_BUF) {
    throw_errno(env, len == 0 ? ENOENT : ENAMETOOLONG, "open", NULL);
    return -1;
  }
  napi_get_value_string_utf8(env, v, buf, PATH_BUF, &len);
  if (strlen(buf) != len) {  // embedded NUL
    throw_errno(env, EINVAL, "open", NULL);
    return -1;
  }
  return 1;
}

static int get_int(napi_env env, napi_value v, int32_t *out, const char *what) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) {
    throw_type(env, what);
    return -1;
  }
  napi_get_value_int32(env, v, out);
  return 0;
}

// Declares argv[N] and throws a TypeError naming the signature when fewer are given.
#define ARGS(N, signature)                                  \
  size_t argc = N;                                          \
  napi_value argv[N];                                       \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);     \
  if (argc < N) return throw_type(env, signature)

// ---- namespace scope -----------------------------------------------------------------

// Enters the network namespace at `path`. On success *saved holds a descriptor of the
// namespace to return to. Returns 0 or an errno (nothing changed on failure).
static int ns_enter(const char *path, int *saved, const char **failed_syscall) {
  *saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (*saved < 0) {
    *failed_syscall = "open";
    return errno;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int e = errno;
    close(*saved);
    *failed_syscall = "open";
    return e;
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int e = errno;
    close(target);
    close(*saved);
    *failed_syscall = "setns";
    return e;
  }
  close(target);
  return 0;
}

static void ns_leave(int saved) {
  if (setns(saved, CLONE_NEWNET) < 0) abort();  // never continue in the wrong namespace
  close(saved);
}

// ---- netlink -------------------------------------------------------------------------

static int nl_open_here(int protocol) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) return -errno;
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  int one = 1;
  // Extended acks carry the kernel's error message; best effort (old kernels lack it).
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  return fd;
}

// nlOpen(nsPath | null, protocol) -> fd
static napi_value NlOpen(napi_env env, napi_callback_info info) {
  ARGS(2, "nlOpen(nsPath, protocol)");
  char path[PATH_BUF];
  int has = get_path(env, argv[0], path, 1, "nsPath must be a string or null");
  if (has < 0) return NULL;
  int32_t protocol;
  if (get_int(env, argv[1], &protocol, "protocol must be a number") < 0) return NULL;

  int fd;
  if (has) {
    int saved;
    const char *sc;
    int e = ns_enter(path, &saved, &sc);
    if (e) return throw_errno(env, e, sc, path);
    fd = nl_open_here(protocol);
    ns_leave(saved);
  } else {
    fd = nl_open_here(protocol);
  }
  if (fd < 0) return throw_errno(env, -fd, "socket", NULL);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// nlSend(fd, buf) -> bytes sent
static napi_value NlSend(napi_env env, napi_callback_info info) {
  ARGS(2, "nlSend(fd, buf)");
  int32_t fd;
  if (get_int(env, argv[0], &fd, "fd must be a number") < 0) return NULL;
  bool is_buf = false;
  napi_is_buffer(env, argv[1], &is_buf);
  if (!is_buf) return throw_type(env, "buf must be a Buffer");
  void *data;
  size_t len;
  napi_get_buffer_info(env, argv[1], &data, &len);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  ssize_t n;
  do n = sendto(fd, data, len, 0, (struct sockaddr *)&sa, sizeof sa);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "sendto", NULL);
  napi_value out;
  napi_create_int64(env, n, &out);
  return out;
}

// nlRecv(fd, timeoutMs) -> Buffer with one datagram (one or more netlink messages)
static napi_value NlRecv(napi_env env, napi_callback_info info) {
  ARGS(2, "nlRecv(fd, timeoutMs)");
  int32_t fd, timeout;
  if (get_int(env, argv[0], &fd, "fd must be a number") < 0) return NULL;
  if (get_int(env, argv[1], &timeout, "timeoutMs must be a number") < 0) return NULL;

  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r;
  do r = poll(&p, 1, timeout);
  while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, errno, "poll", NULL);
  if (r == 0) return throw_errno(env, ETIMEDOUT, "poll", NULL);

  // Peek the datagram's real size so a large dump message is never truncated.
  char probe[16];
  ssize_t size;
  do size = recv(fd, probe, sizeof probe, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
  while (size < 0 && errno == EINTR);
  if (size < 0) return throw_errno(env, errno, "recv", NULL);

  void *data;
  napi_value buf;
  if (napi_create_buffer(env, size > 0 ? (size_t)size : 1, &data, &buf) != napi_ok) return NULL;
  ssize_t n;
  do n = recv(fd, data, size > 0 ? (size_t)size : 1, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "recv", NULL);
  if (n < size) {
    napi_value sub;
    // Datagram shrank between peek and read (cannot happen on one reader); slice.
    napi_create_buffer_copy(env, (size_t)n, data, NULL, &sub);
    return sub;
  }
  return buf;
}

// close(fd)
static napi_value Close(napi_env env, napi_callback_info info) {
  ARGS(1, "close(fd)");
  int32_t fd;
  if (get_int(env, argv[0], &fd, "fd must be a number") < 0) return NULL;
  if (close(fd) < 0 && errno != EINTR) return throw_errno(env, errno, "close", NULL);
  return NULL;
}

// ---- files ---------------------------------------------------------------------------

// nsOpenFile(nsPath | null, path, flags, mode) -> fd. The file is opened inside the
// namespace; /proc/sys/net files keep referring to that namespace after we return.
static napi_value NsOpenFile(napi_env env, napi_callback_info info) {
  ARGS(4, "nsOpenFile(nsPath, path, flags, mode)");
  char ns[PATH_BUF], path[PATH_BUF];
  int has = get_path(env, argv[0], ns, 1, "nsPath must be a string or null");
  if (has < 0) return NULL;
  if (get_path(env, argv[1], path, 0, "path must be a string") < 0) return NULL;
  int32_t flags, mode;
  if (get_int(env, argv[2], &flags, "flags must be a number") < 0) return NULL;
  if (get_int(env, argv[3], &mode, "mode must be a number") < 0) return NULL;

  int fd, e = 0;
  if (has) {
    int saved;
    const char *sc;
    e = ns_enter(ns, &saved, &sc);
    if (e) return throw_errno(env, e, sc, ns);
    fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) e = errno;
    ns_leave(saved);
  } else {
    fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) e = errno;
  }
  if (fd < 0) return throw_errno(env, e, "open", path);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// isNetns(path) -> boolean: the path is an nsfs file for a network namespace.
static napi_value IsNetns(napi_env env, napi_callback_info info) {
  ARGS(1, "isNetns(path)");
  char path[PATH_BUF];
  if (get_path(env, argv[0], path, 0, "path must be a string") < 0) return NULL;
  struct statfs st;
  if (statfs(path, &st) < 0) return throw_errno(env, errno, "statfs", path);
  bool result = false;
  if ((unsigned long)st.f_type == NSFS_MAGIC) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return throw_errno(env, errno, "open", path);
    int type = ioctl(fd, NS_GET_NSTYPE);
    close(fd);
    // Kernels before 4.11 lack NS_GET_NSTYPE: accept any nsfs file there.
    result = type == CLONE_NEWNET || (type < 0 && errno == ENOTTY);
  }
  napi_value out;
  napi_get_boolean(env, result, &out);
  return out;
}

// flock(fd, op): LOCK_SH=1, LOCK_EX=2, LOCK_NB=4, LOCK_UN=8. Throws EWOULDBLOCK with LOCK_NB.
static napi_value Flock(napi_env env, napi_callback_info info) {
  ARGS(2, "flock(fd, op)");
  int32_t fd, op;
  if (get_int(env, argv[0], &fd, "fd must be a number") < 0) return NULL;
  if (get_int(env, argv[1], &op, "op must be a number") < 0) return NULL;
  int r;
  do r = flock(fd, op);
  while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, errno, "flock", NULL);
  return NULL;
}

// ---- daemon socket I/O ------------------------------------------------------------------
//
// The CNI daemon (daemon/) serves a unix stream socket. Node reads a non-IPC unix socket
// with read(), which drops SCM_RIGHTS descriptors, and offers no SO_PEERCRED, so these
// few calls do it: listen, accept with the peer's credentials, recvmsg with descriptors,
// send. Every descriptor is non-blocking and nothing here waits: readiness comes from a
// uv_poll_t on Node's own event loop (watch*), whose callback runs JavaScript like any
// other I/O callback (microtasks drained after it).

#include <sys/un.h>
#include <uv.h>

#define MAX_PASSED_FDS 4
#define RECV_CHUNK 65536

// unixListen(path, backlog) -> fd. Binds a new socket at "<path>.<pid>.tmp" and renames
// it over `path` (a stale socket file is replaced without a moment where the path is
// missing). The socket inode is made 0600 before bind, and bind creates the file with
// that mode (the umask can only remove bits): no window with a wider mode, and no
// process-wide umask change. The directory's mode is the caller's business.
static napi_value UnixListen(napi_env env, napi_callback_info info) {
  ARGS(2, "unixListen(path, backlog)");
  char path[PATH_BUF];
  if (get_path(env, argv[0], path, 0, "path must be a string") < 0) return NULL;
  int32_t backlog;
  if (get_int(env, argv[1], &backlog, "backlog must be a number") < 0) return NULL;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  char tmp[sizeof sa.sun_path];
  int len = snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
  if (len < 0 || (size_t)len >= sizeof tmp) return throw_errno(env, ENAMETOOLONG, "bind", path);
  memcpy(sa.sun_path, tmp, (size_t)len + 1);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", NULL);
  const char *sc = "fchmod";
  int e = 0;
  if (fchmod(fd, 0600) < 0) e = errno;
  if (!e && unlink(tmp) < 0 && errno != ENOENT) e = errno, sc = "unlink";
  if (!e && bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) e = errno, sc = "bind";
  if (!e && listen(fd, backlog) < 0) e = errno, sc = "listen";
  if (!e && rename(tmp, path) < 0) e = errno, sc = "rename";
  if (e) {
    if (strcmp(sc, "bind") != 0) unlink(tmp);
    close(fd);
    return throw_errno(env, e, sc, path);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static int set_int_prop(napi_env env, napi_value obj, const char *name, int64_t v) {
  napi_value x;
  if (napi_create_int64(env, v, &x) != napi_ok) return -1;
  return napi_set_named_property(env, obj, name, x) == napi_ok ? 0 : -1;
}

// unixAccept(fd) -> null when no connection is waiting, else {fd, pid, uid, gid}: the
// new connection (non-blocking, close-on-exec) and its peer's SO_PEERCRED.
static napi_value UnixAccept(napi_env env, napi_callback_info info) {
  ARGS(1, "unixAccept(fd)");
  int32_t lfd;
  if (get_int(env, argv[0], &lfd, "fd must be a number") < 0) return NULL;
  int fd;
  do fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    return throw_errno(env, errno, "accept4", NULL);
  }
  struct ucred cred;
  socklen_t clen = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "getsockopt", NULL);
  }
  napi_value out;
  if (napi_create_object(env, &out) != napi_ok || set_int_prop(env, out, "fd", fd) < 0 || set_int_prop(env, out, "pid", cred.pid) < 0 ||
      set_int_prop(env, out, "uid", cred.uid) < 0 || set_int_prop(env, out, "gid", cred.gid) < 0) {
    close(fd);
    return NULL;
  }
  return out;
}

// unixRecv(fd, max) -> null when nothing is waiting, else {data, fds, truncated}: at most
// `max` (<= 64 KiB) bytes (empty: the peer closed), the descriptors that came with them
// (close-on-exec), and whether the kernel dropped descriptors that did not fit.
static napi_value UnixRecv(napi_env env, napi_callback_info info) {
  ARGS(2, "unixRecv(fd, max)");
  int32_t fd, max;
  if (get_int(env, argv[0], &fd, "fd must be a number") < 0) return NULL;
  if (get_int(env, argv[1], &max, "max must be a number") < 0) return NULL;
  if (max < 1 || max > RECV_CHUNK) return throw_errno(env, EINVAL, "recvmsg", NULL);
  char data[RECV_CHUNK];
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
  } ctl;
  struct iovec iov = {.iov_base = data, .iov_len = (size_t)max};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    return throw_errno(env, errno, "recvmsg", NULL);
  }
  int fds[MAX_PASSED_FDS];
  size_t nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (nfds < MAX_PASSED_FDS) fds[nfds++] = got;
      else close(got);
    }
  }
  napi_value out, buf, arr, truncated;
  if (napi_create_object(env, &out) != napi_ok || napi_create_buffer_copy(env, (size_t)n, data, NULL, &buf) != napi_ok ||
      napi_create_array_with_length(env, nfds, &arr) != napi_ok || napi_get_boolean(env, (msg.msg_flags & MSG_CTRUNC) != 0, &truncated) != napi_ok) {
    for (size_t i = 0; i < nfds; i++) close(fds[i]);
    return NULL;
  }
  for (size_t i = 0; i < nfds; i++) {
    napi_value v;
    if (napi_create_int32(env, fds[i], &v) != napi_ok || napi_set_element(env, arr, (uint32_t)i, v) != napi_ok) {
      for (size_t j = 0; j < nfds; j++) close(fds[j]);
      return NULL;
    }
  }
  if (napi_set_named_property(env, out, "data", buf) != napi_ok || napi_set_named_property(env, out, "fds", arr) != napi_ok ||
      napi_set_named_property(env, out, "truncated", truncated) != napi_ok) {
    for (size_t i = 0; i < nfds; i++) close(fds[i]);
    return NULL;
  }
  return out;
}

// unixSend(fd, buf) -> bytes sent (0: the socket buffer is full, wait for POLLOUT). A
// peer that went away throws EPIPE (never SIGPIPE).
static napi_value UnixSend(napi_env env, napi_callback_info info) {
  ARGS(2, "unixSend(fd, buf)");
  int32_t fd;
  if (get_int(env, argv[0], &fd, "fd must be a number") < 0) return NULL;
  bool is_buf = false;
  if (napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf) return throw_type(env, "buf must be a Buffer");
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) return NULL;
  ssize_t n;
  do n = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return throw_errno(env, errno, "send", NULL);
    n = 0;
  }
  napi_value out;
  napi_create_int64(env, n, &out);
  return out;
}

// A descriptor watched by libuv. The JavaScript object holding it (an external) and the
// uv handle each keep it alive: it is freed once the handle is closed and the external
// collected, whichever comes last. Closing drops the reference to the callback at once.
typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
  int closing;    // watchClose called (or the external collected first)
  int uv_closed;  // uv_close finished
  int finalized;  // the external was collected
} watcher_t;

static void watcher_free(watcher_t *w) {
  if (w->cb) napi_delete_reference(w->env, w->cb);
  if (w->actx) napi_async_destroy(w->env, w->actx);
  free(w);
}

static void watcher_on_close(uv_handle_t *h) {
  watcher_t *w = h->data;
  w->uv_closed = 1;
  if (w->finalized) watcher_free(w);
}

static void watcher_close(watcher_t *w) {
  if (w->closing) return;
  w->closing = 1;
  // The callback (and what it closes over, the JavaScript object holding this watcher's
  // external) must not stay rooted: else the external is never collected and the
  // watcher never freed.
  if (w->cb) {
    napi_delete_reference(w->env, w->cb);
    w->cb = NULL;
  }
  uv_close((uv_handle_t *)&w->poll, watcher_on_close);
}

static void watcher_finalize(napi_env env, void *data, void *hint) {
  watcher_t *w = data;
  w->finalized = 1;
  if (!w->closing) watcher_close(w);
  else if (w->uv_closed) watcher_free(w);
}

static void watcher_on_poll(uv_poll_t *h, int status, int events) {
  watcher_t *w = h->data;
  if (w->closing) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, args[2], result;
  // napi_make_callback converts the receiver to an object: the global, not undefined.
  if (napi_get_reference_value(env, w->cb, &cb) == napi_ok && cb && napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, events, &args[0]) == napi_ok && napi_create_int32(env, status, &args[1]) == napi_ok) {
    if (napi_make_callback(env, w->actx, recv, cb, 2, args, &result) == napi_pending_exception) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static watcher_t *get_watcher(napi_env env, napi_value v) {
  napi_valuetype t;
  void *p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_type(env, "watcher must come from watch()");
    return NULL;
  }
  watcher_t *w = p;
  if (w->closing) {
    throw_errno(env, EBADF, "uv_poll", NULL);
    return NULL;
  }
  return w;
}

// watch(fd, callback(events, status)) -> watcher. Nothing is watched until watchStart.
// `events` are libuv's UV_READABLE = 1 and UV_WRITABLE = 2; `status` is 0 or a negative
// libuv error.
static napi_value Watch(napi_env env, napi_callback_info info) {
  ARGS(2, "watch(fd, callback)");
  int32_t fd;
  if (get_int(env, argv[0], &fd, "fd must be a number") < 0) return NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) return throw_type(env, "callback must be a function");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  watcher_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, "calloc", NULL);
  w->env = env;
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r < 0) {
    free(w);
    return throw_errno(env, -r, "uv_poll_init", NULL);
  }
  w->poll.data = w;
  napi_value name, ext;
  if (napi_create_reference(env, argv[1], 1, &w->cb) != napi_ok ||
      napi_create_string_utf8(env, "strand.watch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &w->actx) != napi_ok || napi_create_external(env, w, watcher_finalize, NULL, &ext) != napi_ok) {
    // Not handed to JavaScript: close the handle and free once libuv is done with it.
    w->finalized = 1;
    watcher_close(w);
    return NULL;
  }
  return ext;
}

// watchStart(watcher, events): (re)starts watching for `events` (UV_READABLE | UV_WRITABLE).
static napi_value WatchStart(napi_env env, napi_callback_info info) {
  ARGS(2, "watchStart(watcher, events)");
  watcher_t *w = get_watcher(env, argv[0]);
  if (!w) return NULL;
  int32_t events;
  if (get_int(env, argv[1], &events, "events must be a number") < 0) return NULL;
  int r = uv_poll_start(&w->poll, events & (UV_READABLE | UV_WRITABLE), watcher_on_poll);
  if (r < 0) return throw_errno(env, -r, "uv_poll_start", NULL);
  return NULL;
}

// watchStop(watcher): stops watching (the descriptor stays open).
static napi_value WatchStop(napi_env env, napi_callback_info info) {
  ARGS(1, "watchStop(watcher)");
  watcher_t *w = get_watcher(env, argv[0]);
  if (!w) return NULL;
  uv_poll_stop(&w->poll);
  return NULL;
}

// watchClose(watcher): stops and releases the watcher (not the descriptor: close it after).
static napi_value WatchClose(napi_env env, napi_callback_info info) {
  ARGS(1, "watchClose(watcher)");
  watcher_t *w = get_watcher(env, argv[0]);
  if (!w) return NULL;
  watcher_close(w);
  return NULL;
}

// ---- module --------------------------------------------------------------------------

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"nlOpen", NULL, NlOpen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nlSend", NULL, NlSend, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nlRecv", NULL, NlRecv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, Close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nsOpenFile", NULL, NsOpenFile, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isNetns", NULL, IsNetns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flock", NULL, Flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixListen", NULL, UnixListen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixAccept", NULL, UnixAccept, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixRecv", NULL, UnixRecv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixSend", NULL, UnixSend, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watch", NULL, Watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watchStart", NULL, WatchStart, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watchStop", NULL, WatchStop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watchClose", NULL, WatchClose, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
