// strand_native: the N-API addon. It does what JavaScript cannot: open a netlink socket
// or a file inside another network namespace, run netlink round trips off the JavaScript
// thread, tell whether a path is a network namespace, and take an advisory file lock.
//
// Every namespace-entering function enters the target namespace, does one thing and
// returns to the original namespace inside the same C call, so no JavaScript ever runs
// while this thread is in another namespace. If returning fails the process aborts:
// continuing in the wrong namespace would silently configure the wrong network.
//
// Netlink round trips (nlRequest) and sysctl writes (fdWrite) run on threads of our own,
// not on libuv's pool of 4: the kernel handles a netlink request inside sendto(), under
// its RTNL lock, and a veth deletion then waits there for RCU grace periods (15-30 ms),
// so a burst of DELs would park every pool thread in the kernel and stall fs and crypto
// work of the whole process. Those waits overlap well: deleting 50 veth pairs took
// ~900 ms on 1 thread, ~400 ms on 4, ~70 ms on 64 (kernel 6.18). So up to 64 threads are
// started on demand (a plugin process that sends one request at a time uses one); idle
// ones sleep. The threads only move bytes and find where a reply ends; all parsing is
// TypeScript's.
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
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
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

// ---- work off the JavaScript thread --------------------------------------------------
//
// A job is one netlink round trip or one write. JavaScript submits it and gets a promise;
// a worker thread does the blocking syscalls; the thread-safe function of the job's
// environment (main thread, or a worker_threads Worker) settles the promise.
// Callers keep at most one job per netlink socket in flight (lib/netlink/socket.ts).

#define WORKERS_MAX 64  // see the file comment; each idle one costs a sleeping thread
#define QUEUE_MAX 4096
#define REPLY_MAX ((size_t)256 << 20)  // a dump larger than this fails with ENOBUFS

// One received datagram.
typedef struct chunk {
  struct chunk *next;
  size_t len;
  unsigned char data[];
} chunk;

// Per environment. Freed when the thread-safe function is gone and no job refers to it.
typedef struct env_ctx {
  napi_threadsafe_function tsfn;
  int closing;       // under ctx_mu: the tsfn is being finalized, do not call it
  int refs;          // under ctx_mu: 1 for the tsfn + 1 per job
  uint32_t pending;  // main thread only: jobs not yet settled (the tsfn is ref'd while > 0)
} env_ctx;

typedef enum { JOB_NL_REQUEST, JOB_WRITE } job_kind;

typedef struct job {
  struct job *next;
  job_kind kind;
  env_ctx *ctx;
  napi_deferred deferred;
  int fd;
  int timeout_ms;
  uint32_t seq;
  size_t len;
  unsigned char *data;  // request bytes (our copy)
  // results
  int err;  // errno, 0 on success
  const char *syscall;
  ssize_t written;
  chunk *head, **tail;
  uint32_t nchunks;
  size_t total;
} job;

static pthread_mutex_t queue_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cv = PTHREAD_COND_INITIALIZER;
static job *queue_head, **queue_tail = &queue_head;
static int queue_len, idle_workers, workers;

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;

static void ctx_unref(env_ctx *c) {
  pthread_mutex_lock(&ctx_mu);
  int last = --c->refs == 0;
  pthread_mutex_unlock(&ctx_mu);
  if (last) free(c);
}

static void free_chunks(job *j) {
  for (chunk *c = j->head, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  j->head = NULL;
}

static void job_free(job *j) {
  free_chunks(j);
  free(j->data);
  free(j);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_fail(job *j, int err, const char *syscall) {
  j->err = err;
  j->syscall = syscall;
}

// True when the datagram holds the end of the reply to `seq`: its NLMSG_ERROR (an error
// or the ack) or NLMSG_DONE. A malformed datagram also ends it (the codec reports it).
static int reply_ends(const unsigned char *p, size_t len, uint32_t seq) {
  while (len >= sizeof(struct nlmsghdr)) {
    const struct nlmsghdr *h = (const struct nlmsghdr *)p;
    if (h->nlmsg_len < sizeof *h || h->nlmsg_len > len) return 1;
    if (h->nlmsg_seq == seq && (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE)) return 1;
    size_t step = NLMSG_ALIGN(h->nlmsg_len);
    if (step >= len) break;
    p += step;
    len -= step;
  }
  return 0;
}

// Sends the request, then receives datagrams until the end of its reply or the deadline.
// The kernel does the work inside sendto() (under RTNL): this is what must not run on
// the JavaScript thread.
static void run_nl_request(job *j) {
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  ssize_t n;
  do n = sendto(j->fd, j->data, j->len, 0, (struct sockaddr *)&sa, sizeof sa);
  while (n < 0 && errno == EINTR);
  if (n < 0) return job_fail(j, errno, "sendto");
  int64_t deadline = now_ms() + j->timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    struct pollfd p = {.fd = j->fd, .events = POLLIN};
    int r = poll(&p, 1, left > 0 ? (int)left : 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return job_fail(j, errno, "poll");
    if (r == 0) return job_fail(j, ETIMEDOUT, "poll");
    // Peek the datagram's real size so a large dump message is never truncated.
    char probe[16];
    ssize_t size;
    do size = recv(j->fd, probe, sizeof probe, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    while (size < 0 && errno == EINTR);
    if (size < 0 && errno == EAGAIN) continue;
    if (size < 0) return job_fail(j, errno, "recv");
    if (j->total + (size_t)size > REPLY_MAX) return job_fail(j, ENOBUFS, "recv");
    size_t cap = size > 0 ? (size_t)size : 1;
    chunk *c = malloc(sizeof *c + cap);
    if (!c) return job_fail(j, ENOMEM, "recv");
    do n = recv(j->fd, c->data, cap, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      int e = errno;
      free(c);
      return job_fail(j, e, "recv");
    }
    c->len = (size_t)n;
    c->next = NULL;
    *j->tail = c;
    j->tail = &c->next;
    j->nchunks++;
    j->total += (size_t)n;
    if (reply_ends(c->data, c->len, j->seq)) return;
  }
}

static void run_write(job *j) {
  ssize_t n;
  do n = write(j->fd, j->data, j->len);
  while (n < 0 && errno == EINTR);
  if (n < 0) return job_fail(j, errno, "write");
  j->written = n;
}

// Hands a finished job to its environment's thread; drops it if that is going away.
static void job_done(job *j) {
  env_ctx *c = j->ctx;
  pthread_mutex_lock(&ctx_mu);
  int queued = !c->closing && napi_call_threadsafe_function(c->tsfn, j, napi_tsfn_nonblocking) == napi_ok;
  pthread_mutex_unlock(&ctx_mu);
  if (!queued) {
    job_free(j);
    ctx_unref(c);
  }
}

static void *worker_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&queue_mu);
  for (;;) {
    idle_workers++;
    while (!queue_head) pthread_cond_wait(&queue_cv, &queue_mu);
    idle_workers--;
    job *j = queue_head;
    queue_head = j->next;
    if (!queue_head) queue_tail = &queue_head;
    queue_len--;
    pthread_mutex_unlock(&queue_mu);
    if (j->kind == JOB_NL_REQUEST)
      run_nl_request(j);
    else
      run_write(j);
    job_done(j);
    pthread_mutex_lock(&queue_mu);
  }
  return NULL;
}

// Starts a detached worker with every signal blocked (signals belong to the main thread).
static int spawn_worker(void) {
  pthread_attr_t attr;
  sigset_t all, old;
  pthread_t t;
  int e = pthread_attr_init(&attr);
  if (e) return e;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  e = pthread_create(&t, &attr, worker_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return e;
}

// Queues a job, starting a worker when none is idle (up to WORKERS_MAX). Returns 0 or
// an errno with *syscall set.
static int enqueue(job *j, const char **syscall) {
  pthread_mutex_lock(&queue_mu);
  if (queue_len >= QUEUE_MAX) {
    pthread_mutex_unlock(&queue_mu);
    *syscall = "queue";
    return EAGAIN;
  }
  if (queue_len + 1 > idle_workers && workers < WORKERS_MAX) {
    int e = spawn_worker();
    if (!e)
      workers++;
    else if (workers == 0) {
      pthread_mutex_unlock(&queue_mu);
      *syscall = "pthread_create";
      return e;
    }
  }
  j->next = NULL;
  *queue_tail = j;
  queue_tail = &j->next;
  queue_len++;
  pthread_cond_signal(&queue_cv);
  pthread_mutex_unlock(&queue_mu);
  return 0;
}

// The datagrams of a finished round trip as an array of Buffers.
static napi_status reply_array(napi_env env, const job *j, napi_value *out) {
  napi_status s = napi_create_array_with_length(env, j->nchunks, out);
  uint32_t i = 0;
  for (const chunk *ch = j->head; ch && s == napi_ok; ch = ch->next, i++) {
    napi_value buf;
    void *unused;
    if ((s = napi_create_buffer_copy(env, ch->len, ch->data, &unused, &buf)) == napi_ok) s = napi_set_element(env, *out, i, buf);
  }
  return s;
}

// Settles a job's promise on its environment's thread (the tsfn's call_js).
static void settle(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)js_cb;
  env_ctx *c = context;
  job *j = data;
  if (env) {  // NULL: the environment is being torn down, only free
    napi_value value = NULL;
    napi_status s = napi_ok;
    int ok = 0;
    if (j->err) {
      s = errno_error(env, j->err, j->syscall, NULL, &value);
    } else if (j->kind == JOB_WRITE) {
      s = napi_create_int64(env, j->written, &value);
      ok = s == napi_ok;
    } else {
      s = reply_array(env, j, &value);
      ok = s == napi_ok;
    }
    if (s != napi_ok) value = napi_failure(env, "settle");
    if (value) s = ok ? napi_resolve_deferred(env, j->deferred, value) : napi_reject_deferred(env, j->deferred, value);
    if (!value || s != napi_ok) napi_failed(env, "settle: the promise of a netlink request");
    if (--c->pending == 0 && napi_unref_threadsafe_function(env, c->tsfn) != napi_ok) napi_failed(env, "napi_unref_threadsafe_function");
  }
  job_free(j);
  ctx_unref(c);
}

// The tsfn is being destroyed (environment teardown): no worker may call it from now on.
static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  env_ctx *c = data;
  pthread_mutex_lock(&ctx_mu);
  c->closing = 1;
  pthread_mutex_unlock(&ctx_mu);
  ctx_unref(c);
}

// Submits a job whose request bytes are copied from `data`; returns its promise. Failing
// to queue rejects the promise (arguments were checked by the caller).
static napi_value submit(napi_env env, job_kind kind, int fd, const void *data, size_t len, int timeout_ms, uint32_t seq) {
  env_ctx *c;
  NAPI(napi_get_instance_data(env, (void **)&c));
  napi_value promise;
  napi_deferred deferred;
  NAPI(napi_create_promise(env, &deferred, &promise));
  if (c->pending == 0) NAPI(napi_ref_threadsafe_function(env, c->tsfn));  // keep the process alive
  c->pending++;
  job *j = calloc(1, sizeof *j);
  unsigned char *copy = malloc(len ? len : 1);
  const char *syscall = "malloc";
  int e = j && copy ? 0 : ENOMEM;
  if (!e) {
    memcpy(copy, data, len);
    *j = (job){.kind = kind, .ctx = c, .deferred = deferred, .fd = fd, .timeout_ms = timeout_ms, .seq = seq, .len = len, .data = copy};
    j->tail = &j->head;
    pthread_mutex_lock(&ctx_mu);
    c->refs++;
    pthread_mutex_unlock(&ctx_mu);
    e = enqueue(j, &syscall);
    if (e) ctx_unref(c);
  }
  if (e) {
    free(copy);
    free(j);
    if (--c->pending == 0) NAPI(napi_unref_threadsafe_function(env, c->tsfn));
    napi_value error;
    NAPI(errno_error(env, e, syscall, NULL, &error));
    NAPI(napi_reject_deferred(env, deferred, error));
  }
  return promise;
}

// Reads the (fd, request, timeoutMs) arguments of nlRequest/nlRequestSync into a job.
// Returns 0, or -1 after throwing.
static int request_args(napi_env env, napi_value *argv, job *j) {
  int32_t fd, timeout;
  void *data;
  size_t len;
  if (FD_ARG(argv[0], &fd) < 0) return -1;
  if (get_buffer(env, argv[1], "request", &data, &len) < 0) return -1;
  if (get_int(env, argv[2], "timeoutMs", 0, INT32_MAX, &timeout) < 0) return -1;
  if (len < sizeof(struct nlmsghdr) || len > ((size_t)1 << 20)) {
    throw_range(env, "request must hold a netlink message (16 bytes to 1 MiB)");
    return -1;
  }
  struct nlmsghdr h;
  memcpy(&h, data, sizeof h);
  *j = (job){.kind = JOB_NL_REQUEST, .fd = fd, .timeout_ms = timeout, .seq = h.nlmsg_seq, .len = len, .data = data};
  j->tail = &j->head;
  return 0;
}

// nlRequest(fd, request, timeoutMs) -> Promise<Buffer[]>: sends one netlink request and
// resolves with every datagram received up to the end of its reply (NLMSG_ERROR or
// NLMSG_DONE with the request's sequence number); rejects with ETIMEDOUT after timeoutMs.
static napi_value NlRequest(napi_env env, napi_callback_info info) {
  ARGS(3, "nlRequest(fd, request, timeoutMs)");
  job a;
  if (request_args(env, argv, &a) < 0) return NULL;
  return submit(env, JOB_NL_REQUEST, a.fd, a.data, a.len, a.timeout_ms, a.seq);
}

// nlRequestSync(fd, request, timeoutMs) -> Buffer[]: the same round trip on the calling
// thread, for a process that serves one call and has nothing else to do meanwhile (a
// plugin process): no thread handoff.
static napi_value NlRequestSync(napi_env env, napi_callback_info info) {
  ARGS(3, "nlRequestSync(fd, request, timeoutMs)");
  job j;
  if (request_args(env, argv, &j) < 0) return NULL;
  run_nl_request(&j);
  napi_value out = NULL;
  napi_status s = napi_ok;
  if (j.err)
    throw_errno(env, j.err, j.syscall, NULL);
  else if ((s = reply_array(env, &j, &out)) != napi_ok)
    napi_failed(env, "nlRequestSync");
  free_chunks(&j);  // j.data is the caller's Buffer
  return s == napi_ok ? out : NULL;
}

// fdWrite(fd, data) -> Promise<number>: write(2) off the JavaScript thread (a sysctl
// write can wait for RTNL in the kernel).
static napi_value FdWrite(napi_env env, napi_callback_info info) {
  ARGS(2, "fdWrite(fd, data)");
  int32_t fd;
  void *data;
  size_t len;
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  if (get_buffer(env, argv[1], "data", &data, &len) < 0) return NULL;
  if (len > ((size_t)1 << 20)) return throw_range(env, "data must be at most 1 MiB");
  return submit(env, JOB_WRITE, fd, data, len, 0, 0);
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
  if (get_int(env, argv[1], "backlog", 0, 4096, &backlog) < 0) return NULL;
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
  if (napi_create_int32(env, fd, &out) != napi_ok) {
    napi_failed(env, "napi_create_int32");
    unlink(path);
    close(fd);
    return NULL;
  }
  return out;
}

// Sets obj[name] = v. Returns 0, or -1 after throwing.
static int set_int_prop(napi_env env, napi_value obj, const char *name, int64_t v) {
  napi_value x;
  NAPI_OR(-1, napi_create_int64(env, v, &x));
  NAPI_OR(-1, napi_set_named_property(env, obj, name, x));
  return 0;
}

// unixAccept(fd) -> null when no connection is waiting, else {fd, pid, uid, gid}: the
// new connection (non-blocking, close-on-exec) and its peer's SO_PEERCRED.
static napi_value UnixAccept(napi_env env, napi_callback_info info) {
  ARGS(1, "unixAccept(fd)");
  int32_t lfd;
  if (FD_ARG(argv[0], &lfd) < 0) return NULL;
  int fd;
  do fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) {
      napi_value nul;
      NAPI(napi_get_null(env, &nul));
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
  if (napi_create_object(env, &out) != napi_ok) {
    napi_failed(env, "napi_create_object");
    close(fd);
    return NULL;
  }
  if (set_int_prop(env, out, "fd", fd) < 0 || set_int_prop(env, out, "pid", cred.pid) < 0 || set_int_prop(env, out, "uid", cred.uid) < 0 ||
      set_int_prop(env, out, "gid", cred.gid) < 0) {
    close(fd);
    return NULL;
  }
  return out;
}

// {data, fds, truncated} for unixRecv. NULL after throwing (the caller closes the fds).
static napi_value recv_result(napi_env env, const char *data, size_t n, const int *fds, size_t nfds, bool truncated) {
  napi_value out, buf, arr, trunc;
  NAPI(napi_create_object(env, &out));
  NAPI(napi_create_buffer_copy(env, n, data, NULL, &buf));
  NAPI(napi_create_array_with_length(env, nfds, &arr));
  NAPI(napi_get_boolean(env, truncated, &trunc));
  for (size_t i = 0; i < nfds; i++) {
    napi_value v;
    NAPI(napi_create_int32(env, fds[i], &v));
    NAPI(napi_set_element(env, arr, (uint32_t)i, v));
  }
  NAPI(napi_set_named_property(env, out, "data", buf));
  NAPI(napi_set_named_property(env, out, "fds", arr));
  NAPI(napi_set_named_property(env, out, "truncated", trunc));
  return out;
}

// unixRecv(fd, max) -> null when nothing is waiting, else {data, fds, truncated}: at most
// `max` (<= 64 KiB) bytes (empty: the peer closed), the descriptors that came with them
// (close-on-exec), and whether the kernel dropped descriptors that did not fit.
static napi_value UnixRecv(napi_env env, napi_callback_info info) {
  ARGS(2, "unixRecv(fd, max)");
  int32_t fd, max;
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  if (get_int(env, argv[1], "max", 1, RECV_CHUNK, &max) < 0) return NULL;
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
      NAPI(napi_get_null(env, &nul));
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
  napi_value out = recv_result(env, data, (size_t)n, fds, nfds, (msg.msg_flags & MSG_CTRUNC) != 0);
  if (!out)
    for (size_t i = 0; i < nfds; i++) close(fds[i]);
  return out;
}

// unixSend(fd, buf) -> bytes sent (0: the socket buffer is full, wait for POLLOUT). A
// peer that went away throws EPIPE (never SIGPIPE).
static napi_value UnixSend(napi_env env, napi_callback_info info) {
  ARGS(2, "unixSend(fd, buf)");
  int32_t fd;
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  void *data;
  size_t len;
  if (get_buffer(env, argv[1], "buf", &data, &len) < 0) return NULL;
  ssize_t n;
  do n = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return throw_errno(env, errno, "send", NULL);
    n = 0;
  }
  return make_int(env, n);
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
  NAPI(napi_typeof(env, v, &t));
  if (t != napi_external) {
    throw_type(env, "watcher must come from watch()");
    return NULL;
  }
  NAPI(napi_get_value_external(env, v, &p));
  if (!p) {
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
  if (FD_ARG(argv[0], &fd) < 0) return NULL;
  napi_valuetype t;
  NAPI(napi_typeof(env, argv[1], &t));
  if (t != napi_function) return throw_type(env, "callback must be a function");
  uv_loop_t *loop;
  NAPI(napi_get_uv_event_loop(env, &loop));
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
    napi_failed(env, "watch");
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
  if (get_int(env, argv[1], "events", 0, UV_READABLE | UV_WRITABLE, &events) < 0) return NULL;
  int r = uv_poll_start(&w->poll, events, watcher_on_poll);
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
  env_ctx *c = calloc(1, sizeof *c);
  if (!c) return throw_errno(env, ENOMEM, "malloc", NULL);
  c->refs = 1;  // the tsfn's, dropped in tsfn_finalize
  napi_value name;
  if (napi_create_string_utf8(env, "strand_native", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, c, tsfn_finalize, c, settle, &c->tsfn) != napi_ok) {
    napi_failed(env, "napi_create_threadsafe_function");
    free(c);
    return NULL;
  }
  // From here on c is owned by the tsfn (freed in tsfn_finalize when nothing else uses it).
  NAPI(napi_unref_threadsafe_function(env, c->tsfn));  // idle: do not keep the process alive
  NAPI(napi_set_instance_data(env, c, NULL, NULL));
  napi_property_descriptor props[] = {
      {"nlOpen", NULL, NlOpen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nlRequest", NULL, NlRequest, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nlRequestSync", NULL, NlRequestSync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fdWrite", NULL, FdWrite, NULL, NULL, NULL, napi_enumerable, NULL},
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
  NAPI(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
