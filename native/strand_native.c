// strand_native: the only native code in strand. It does what JavaScript cannot:
// open a netlink socket or a file inside another network namespace, tell whether a path
// is a network namespace, and take an advisory file lock.
//
// Every namespace-entering function enters the target namespace, does one thing and
// returns to the original namespace inside the same C call, so no JavaScript ever runs
// while this thread is in another namespace. If returning fails the process aborts:
// continuing in the wrong namespace would silently configure the wrong network.
//
// Plain N-API (node_api.h) only, so the binary is ABI-stable across Node versions. Every
// napi_* status is checked (NAPI/NAPI_OR below): a failure becomes a thrown JavaScript
// error. System errors are thrown as Error objects with `code` ("ENOENT"), `errno`
// (positive) and `syscall` properties; bad arguments as TypeError / RangeError.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
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

// ---- errors --------------------------------------------------------------------------

// errno names we can meet (strerrorname_np is glibc-only); others are "E<number>".
#define E(x) {x, #x}
static const struct {
  int num;
  const char *name;
} ERRNO_NAMES[] = {
    E(EPERM),        E(ENOENT),     E(ESRCH),      E(EINTR),           E(EIO),           E(ENXIO),
    E(E2BIG),        E(EBADF),      E(EAGAIN),     E(ENOMEM),          E(EACCES),        E(EFAULT),
    E(EBUSY),        E(EEXIST),     E(EXDEV),      E(ENODEV),          E(ENOTDIR),       E(EISDIR),
    E(EINVAL),       E(ENFILE),     E(EMFILE),     E(ENOTTY),          E(EFBIG),         E(ENOSPC),
    E(EROFS),        E(EMLINK),     E(EPIPE),      E(ERANGE),          E(EDEADLK),       E(ENAMETOOLONG),
    E(ENOLCK),       E(ENOSYS),     E(ENOTEMPTY),  E(ELOOP),           E(ENOMSG),        E(ENODATA),
    E(EPROTO),       E(EBADMSG),    E(EOVERFLOW),  E(ENOTSOCK),        E(EMSGSIZE),      E(EPROTONOSUPPORT),
    E(EOPNOTSUPP),   E(EAFNOSUPPORT), E(EADDRINUSE), E(EADDRNOTAVAIL), E(ENETDOWN),      E(ENETUNREACH),
    E(ECONNRESET),   E(ENOBUFS),    E(ENOTCONN),   E(ETIMEDOUT),       E(ECONNREFUSED),  E(EHOSTUNREACH),
    E(EALREADY),     E(EINPROGRESS), E(ESTALE),    E(EDQUOT),          E(ECANCELED),     E(ESPIPE),
};
#undef E

// The errno's name; `buf` (16 bytes) holds "E<number>" for one not in the table.
static const char *errno_name(int err, char buf[16]) {
  for (size_t i = 0; i < sizeof ERRNO_NAMES / sizeof ERRNO_NAMES[0]; i++)
    if (ERRNO_NAMES[i].num == err) return ERRNO_NAMES[i].name;
  snprintf(buf, 16, "E%d", err);
  return buf;
}

// An Error value for a failed napi_* call: the exception it left pending, or
// ERR_NAPI_FAILURE with N-API's own message. NULL only if even that cannot be made.
static napi_value napi_failure(napi_env env, const char *call) {
  const napi_extended_error_info *info = NULL;
  char msg[320];
  // Read first: every later napi_* call overwrites the last error.
  const char *why = napi_get_last_error_info(env, &info) == napi_ok && info && info->error_message ? info->error_message : "failed";
  snprintf(msg, sizeof msg, "%.200s: %s", call, why);
  bool pending = false;
  napi_value e = NULL, code, message;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &e) == napi_ok) return e;
  if (napi_create_string_utf8(env, "ERR_NAPI_FAILURE", NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok || napi_create_error(env, code, message, &e) != napi_ok)
    return NULL;
  return e;
}

// Throws for a failed napi_* call (see napi_failure).
static void napi_failed(napi_env env, const char *call) {
  napi_value e = napi_failure(env, call);
  if (e) napi_throw(env, e);
}

// Checked N-API calls inside a function that has `env`: on failure throw and return
// `ret` (NAPI_OR) or NULL (NAPI, for napi_callback functions).
#define NAPI_OR(ret, call)               \
  do {                                   \
    if ((call) != napi_ok) {             \
      napi_failed(env, #call);           \
      return ret;                        \
    }                                    \
  } while (0)
#define NAPI(call) NAPI_OR(NULL, call)

// Builds the Error for `err` failing in `syscall` (optionally on `path`) into *out.
static napi_status errno_error(napi_env env, int err, const char *syscall, const char *path, napi_value *out) {
  char nbuf[16], msg[PATH_BUF + 256];
  const char *name = errno_name(err, nbuf);
  if (path)
    snprintf(msg, sizeof msg, "%s: %s (%s '%s')", name, strerror(err), syscall, path);
  else
    snprintf(msg, sizeof msg, "%s: %s (%s)", name, strerror(err), syscall);
  napi_value code, message, error, errno_v, syscall_v, path_v;
  napi_status s;
  if ((s = napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code)) != napi_ok) return s;
  if ((s = napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message)) != napi_ok) return s;
  if ((s = napi_create_error(env, code, message, &error)) != napi_ok) return s;
  if ((s = napi_create_int32(env, err, &errno_v)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, error, "errno", errno_v)) != napi_ok) return s;
  if ((s = napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, error, "syscall", syscall_v)) != napi_ok) return s;
  if (path) {
    if ((s = napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_v)) != napi_ok) return s;
    if ((s = napi_set_named_property(env, error, "path", path_v)) != napi_ok) return s;
  }
  *out = error;
  return napi_ok;
}

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  napi_value error;
  NAPI(errno_error(env, err, syscall, path, &error));
  NAPI(napi_throw(env, error));
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  NAPI(napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg));
  return NULL;
}

static napi_value throw_range(napi_env env, const char *msg) {
  NAPI(napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg));
  return NULL;
}

// ---- arguments -----------------------------------------------------------------------

// Reads argument `v` as a path string into buf. Returns 1 for a string, 0 for null or
// undefined (when allow_null), -1 after throwing.
static int get_path(napi_env env, napi_value v, char *buf, int allow_null, const char *what) {
  napi_valuetype t;
  NAPI_OR(-1, napi_typeof(env, v, &t));
  if (allow_null && (t == napi_null || t == napi_undefined)) return 0;
  if (t != napi_string) {
    throw_type(env, what);
    return -1;
  }
  size_t len;
  NAPI_OR(-1, napi_get_value_string_utf8(env, v, NULL, 0, &len));
  if (len == 0 || len >= PATH_BUF) {
    throw_errno(env, len == 0 ? ENOENT : ENAMETOOLONG, "open", NULL);
    return -1;
  }
  NAPI_OR(-1, napi_get_value_string_utf8(env, v, buf, PATH_BUF, &len));
  if (strlen(buf) != len) {  // embedded NUL
    throw_errno(env, EINVAL, "open", NULL);
    return -1;
  }
  return 1;
}

// Reads argument `v` (named `name`) as an integer in [min, max]: a non-number is a
// TypeError; a fraction, NaN, an infinity or a value out of range a RangeError (never
// truncated). Returns 0, or -1 after throwing.
static int get_int(napi_env env, napi_value v, const char *name, int32_t min, int32_t max, int32_t *out) {
  char msg[160];
  napi_valuetype t;
  NAPI_OR(-1, napi_typeof(env, v, &t));
  if (t != napi_number) {
    snprintf(msg, sizeof msg, "%s must be a number", name);
    throw_type(env, msg);
    return -1;
  }
  double d;
  NAPI_OR(-1, napi_get_value_double(env, v, &d));
  if (!(d >= min && d <= max) || d != (double)(int32_t)d) {  // NaN fails every comparison
    snprintf(msg, sizeof msg, "%s must be an integer from %d to %d", name, (int)min, (int)max);
    throw_range(env, msg);
    return -1;
  }
  *out = (int32_t)d;
  return 0;
}

#define FD_ARG(v, out) get_int(env, (v), "fd", 0, INT32_MAX, (out))

// Reads argument `v` (named `name`) as a Buffer. Returns 0, or -1 after throwing.
static int get_buffer(napi_env env, napi_value v, const char *name, void **data, size_t *len) {
  bool is_buf = false;
  NAPI_OR(-1, napi_is_buffer(env, v, &is_buf));
  if (!is_buf) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be a Buffer", name);
    throw_type(env, msg);
    return -1;
  }
  NAPI_OR(-1, napi_get_buffer_info(env, v, data, len));
  return 0;
}

// Declares argv[N] and throws a TypeError naming the signature when fewer are given.
#define ARGS(N, signature)                                     \
  size_t argc = N;                                             \
  napi_value argv[N];                                          \
  NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));  \
  if (argc < N) return throw_type(env, signature)

static napi_value make_int(napi_env env, int64_t n) {
  napi_value out;
  NAPI(napi_create_int64(env, n, &out));
  return out;
}

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

// ---- netlink sockets -----------------------------------------------------------------

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
  if (get_int(env, argv[1], "protocol", 0, 31, &protocol) < 0) return NULL;

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
  return make_int(env, fd);
}

// close(fd)
static napi_value Close(napi_env env, napi_callback_info info) {
  ARGS(1, "close(fd)");
  int32_t fd;
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  if (close(fd) < 0 && errno != EINTR) return throw_errno(env, errno, "close", NULL);
  return NULL;
}

// nlSend(fd, buf) -> bytes sent
static napi_value NlSend(napi_env env, napi_callback_info info) {
  ARGS(2, "nlSend(fd, buf)");
  int32_t fd;
  void *data;
  size_t len;
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  if (get_buffer(env, argv[1], "buf", &data, &len) < 0) return NULL;
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  ssize_t n;
  do n = sendto(fd, data, len, 0, (struct sockaddr *)&sa, sizeof sa);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "sendto", NULL);
  return make_int(env, n);
}

// nlRecv(fd, timeoutMs) -> Buffer with one datagram (one or more netlink messages)
static napi_value NlRecv(napi_env env, napi_callback_info info) {
  ARGS(2, "nlRecv(fd, timeoutMs)");
  int32_t fd, timeout;
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  if (get_int(env, argv[1], "timeoutMs", 0, INT32_MAX, &timeout) < 0) return NULL;

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
  NAPI(napi_create_buffer(env, size > 0 ? (size_t)size : 1, &data, &buf));
  ssize_t n;
  do n = recv(fd, data, size > 0 ? (size_t)size : 1, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "recv", NULL);
  if (n < size) {
    napi_value sub;
    void *unused;
    // Datagram shrank between peek and read (cannot happen on one reader); slice.
    NAPI(napi_create_buffer_copy(env, (size_t)n, data, &unused, &sub));
    return sub;
  }
  return buf;
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
  if (get_int(env, argv[2], "flags", 0, INT32_MAX, &flags) < 0) return NULL;
  if (get_int(env, argv[3], "mode", 0, 07777, &mode) < 0) return NULL;

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
  return make_int(env, fd);
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
    int e = errno;
    close(fd);
    // Kernels before 4.11 lack NS_GET_NSTYPE: accept any nsfs file there.
    result = type == CLONE_NEWNET || (type < 0 && e == ENOTTY);
  }
  napi_value out;
  NAPI(napi_get_boolean(env, result, &out));
  return out;
}

// flock(fd, op): LOCK_SH=1, LOCK_EX=2, LOCK_NB=4, LOCK_UN=8. Throws EWOULDBLOCK with LOCK_NB.
static napi_value Flock(napi_env env, napi_callback_info info) {
  ARGS(2, "flock(fd, op)");
  int32_t fd, op;
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  if (get_int(env, argv[1], "op", 0, LOCK_SH | LOCK_EX | LOCK_NB | LOCK_UN, &op) < 0) return NULL;
  int r;
  do r = flock(fd, op);
  while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, errno, "flock", NULL);
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
  };
  NAPI(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
