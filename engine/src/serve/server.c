/* The HTTP server of `chai serve` (engine/include/chai/server.h) on libmicrohttpd in "external
 * polling" mode: the caller's thread polls MHD's epoll descriptor and calls MHD_run, so every
 * handler and every stream callback runs in that one thread and nothing needs a lock.
 *
 * Streams: the response body comes from stream_read(), which hands out what the owner has
 * written so far; when nothing is waiting it suspends the connection (so MHD stops polling it
 * instead of spinning) and chai_server_stream_write() resumes it. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chai/server.h"

struct chai_server_stream {
  int refs;                    /* the caller's and, while the response lives, the connection's */
  chai_server *srv;            /* NULL once the response is gone */
  struct MHD_Connection *conn; /* NULL once the response is gone */
  char *buf;                   /* unsent bytes are buf[off, len) */
  size_t off, len, cap;
  int ended;     /* the owner said no more (sent after the queued bytes) */
  int dropped;   /* cut off (too slow, or the server closes): the connection is closed */
  int closed;    /* the response is gone (client disconnected or finished) */
  int suspended; /* the connection waits for bytes */
  chai_server_stream *prev, *next; /* the server's open streams */
};

struct chai_server {
  struct MHD_Daemon *d;
  int listen_fd;
  int epoll_fd;
  int port;
  int in_run;
  size_t max_body, max_stream;
  void (*handler)(void *ud, chai_server_request *req);
  void *ud;
  chai_server_stream *streams;
};

struct chai_server_request {
  chai_server *srv;
  struct MHD_Connection *conn;
  const char *method, *path;
  char *body;
  size_t len, cap;
  int too_large;
  int answered;
  enum MHD_Result result; /* what the access handler returns once answered */
};

/* ---- responses ---- */

static int header_ok(const char *s) {
  return s && !strpbrk(s, "\r\n");
}

static chai_status add_headers(struct MHD_Response *resp, const char *const *headers) {
  for (size_t i = 0; headers && headers[i]; i += 2) {
    if (!header_ok(headers[i]) || !header_ok(headers[i + 1]) || !headers[i][0])
      return chai_error(CHAI_ERR_ARG, "server: bad response header %zu", i / 2 + 1);
    if (MHD_add_response_header(resp, headers[i], headers[i + 1]) != MHD_YES)
      return chai_error(CHAI_ERR_ARG, "server: cannot add response header '%s'", headers[i]);
  }
  return CHAI_OK;
}

static chai_status queue(chai_server_request *r, int status, struct MHD_Response *resp,
                         const char *const *headers) {
  chai_status st = add_headers(resp, headers);
  if (st != CHAI_OK) {
    MHD_destroy_response(resp);
    return st;
  }
  r->result = MHD_queue_response(r->conn, (unsigned)status, resp);
  r->answered = 1;
  MHD_destroy_response(resp); /* the connection keeps its own reference */
  return r->result == MHD_YES ? CHAI_OK : chai_error(CHAI_ERR_IO, "server: cannot queue response");
}

static chai_status check_answer(const chai_server_request *r, int status) {
  if (r->answered) return chai_error(CHAI_ERR_STATE, "server: the request was already answered");
  if (status < 100 || status > 599)
    return chai_error(CHAI_ERR_ARG, "server: HTTP status %d is outside 100..599", status);
  return CHAI_OK;
}

chai_status chai_server_respond(chai_server_request *r, int status, const char *const *headers,
                                const void *body, size_t len) {
  chai_status st = check_answer(r, status);
  if (st != CHAI_OK) return st;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)(len ? body : ""), MHD_RESPMEM_MUST_COPY);
  if (!resp) return chai_error(CHAI_ERR_NOMEM, "server: out of memory for a response");
  return queue(r, status, resp, headers);
}

/* The server's own answers (413, 500): JSON like every other error of the API. */
static enum MHD_Result answer_error(chai_server_request *r, int status, const char *json) {
  static const char *const headers[] = {"Content-Type",
                                        "application/json",
                                        "Cache-Control",
                                        "no-store",
                                        "X-Content-Type-Options",
                                        "nosniff",
                                        NULL};
  if (chai_server_respond(r, status, headers, json, strlen(json)) != CHAI_OK) return MHD_NO;
  return r->result;
}

/* ---- streams ---- */

static void stream_unlink(chai_server_stream *st) {
  if (!st->srv) return;
  if (st->prev)
    st->prev->next = st->next;
  else
    st->srv->streams = st->next;
  if (st->next) st->next->prev = st->prev;
  st->prev = st->next = NULL;
  st->srv = NULL;
}

static void stream_wake(chai_server_stream *st) {
  if (st->suspended && st->conn) {
    st->suspended = 0;
    MHD_resume_connection(st->conn);
  }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  chai_server_stream *st = cls;
  if (st->dropped) return MHD_CONTENT_READER_END_WITH_ERROR;
  if (st->off < st->len) {
    size_t n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(buf, st->buf + st->off, n);
    st->off += n;
    if (st->off == st->len) st->off = st->len = 0;
    return (ssize_t)n;
  }
  if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
  st->suspended = 1;
  MHD_suspend_connection(st->conn);
  return 0;
}

static void stream_gone(void *cls) {
  chai_server_stream *st = cls;
  st->closed = 1;
  st->suspended = 0;
  st->conn = NULL;
  stream_unlink(st);
  chai_server_stream_release(st);
}

chai_status chai_server_respond_stream(chai_server_request *r, int status,
                                       const char *const *headers, chai_server_stream **out) {
  *out = NULL;
  chai_status st = check_answer(r, status);
  if (st != CHAI_OK) return st;
  chai_server_stream *s = calloc(1, sizeof *s);
  if (!s) return chai_error(CHAI_ERR_NOMEM, "server: out of memory for a stream");
  struct MHD_Response *resp =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_gone);
  if (!resp) {
    free(s);
    return chai_error(CHAI_ERR_NOMEM, "server: out of memory for a stream response");
  }
  s->refs = 2;
  s->conn = r->conn;
  s->srv = r->srv;
  s->next = r->srv->streams;
  if (s->next) s->next->prev = s;
  r->srv->streams = s;
  st = queue(r, status, resp, headers); /* on failure MHD has already called stream_gone */
  if (st != CHAI_OK) {
    chai_server_stream_release(s);
    return st;
  }
  *out = s;
  return CHAI_OK;
}

chai_status chai_server_stream_write(chai_server_stream *st, const void *data, size_t len) {
  if (chai_server_stream_closed(st))
    return chai_error(CHAI_ERR_STATE, "server: the stream is closed");
  size_t limit = st->srv ? st->srv->max_stream : 0;
  if (st->len - st->off + len > limit) {
    st->dropped = 1;
    stream_wake(st);
    return chai_error(CHAI_ERR_IO, "server: stream client too slow (%zu bytes unsent)",
                      st->len - st->off);
  }
  if (st->off > 0) { /* compact: unsent bytes to the front */
    memmove(st->buf, st->buf + st->off, st->len - st->off);
    st->len -= st->off;
    st->off = 0;
  }
  if (st->len + len > st->cap) {
    size_t cap = st->cap ? st->cap : 1024;
    while (cap < st->len + len)
      cap *= 2;
    char *b = realloc(st->buf, cap);
    if (!b) return chai_error(CHAI_ERR_NOMEM, "server: out of memory for stream bytes");
    st->buf = b;
    st->cap = cap;
  }
  memcpy(st->buf + st->len, data, len);
  st->len += len;
  stream_wake(st);
  return CHAI_OK;
}

void chai_server_stream_end(chai_server_stream *st) {
  if (!st || st->ended) return;
  st->ended = 1;
  stream_wake(st);
}

int chai_server_stream_closed(const chai_server_stream *st) {
  return st->closed || st->ended || st->dropped;
}

void chai_server_stream_release(chai_server_stream *st) {
  if (!st || --st->refs > 0) return;
  free(st->buf);
  free(st);
}

/* ---- requests ---- */

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const char *chai_server_request_method(const chai_server_request *r) {
  return r->method;
}
const char *chai_server_request_path(const chai_server_request *r) {
  return r->path;
}
const char *chai_server_request_header(const chai_server_request *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}
const char *chai_server_request_arg(const chai_server_request *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}
const char *chai_server_request_body(const chai_server_request *r, size_t *len) {
  if (len) *len = r->len;
  return r->body ? r->body : "";
}

static int append_body(chai_server_request *r, const char *data, size_t n) {
  if (r->len + n > r->srv->max_body) return -1;
  if (r->len + n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 1024;
    while (cap < r->len + n + 1)
      cap *= 2;
    char *b = realloc(r->body, cap);
    if (!b) return -1;
    r->body = b;
    r->cap = cap;
  }
  memcpy(r->body + r->len, data, n);
  r->len += n;
  r->body[r->len] = '\0';
  return 0;
}

/* ---- request hygiene: what libmicrohttpd lets through but a careful server refuses ---- */

/* %HH sequences decoded, except %00: a NUL would cut the path short in every C string after it
 * ("/static/app.js%00.png" must not be "/static/app.js"), so it stays "%00" and cannot match a
 * route. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls, (void)c;
  char *w = s;
  for (const char *r = s; *r;) {
    int hi, lo;
    if (r[0] == '%' && r[1] && r[2] && (hi = hex_digit(r[1])) >= 0 && (lo = hex_digit(r[2])) >= 0 &&
        (hi | lo)) {
      *w++ = (char)(hi * 16 + lo);
      r += 3;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
  return (size_t)(w - s);
}

typedef struct header_check {
  int host, content_length, transfer_encoding, content_type, authorization, bad;
} header_check;

static int is_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static enum MHD_Result check_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size) {
  (void)kind;
  header_check *h = cls;
  if (key_size == 0) h->bad = 1;
  for (size_t i = 0; i < key_size; i++)
    if (!is_tchar((unsigned char)key[i])) h->bad = 1;
  for (size_t i = 0; value && i < value_size; i++) {
    unsigned char ch = (unsigned char)value[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) h->bad = 1; /* NUL and other controls */
  }
  h->host += !strcasecmp(key, "Host");
  h->content_length += !strcasecmp(key, "Content-Length");
  h->transfer_encoding += !strcasecmp(key, "Transfer-Encoding");
  h->content_type += !strcasecmp(key, "Content-Type");
  h->authorization += !strcasecmp(key, "Authorization");
  return MHD_YES;
}

/* NULL when the headers are acceptable, else the reason (answered 400): a header name that is
 * not a token, a control character in a value, Host, Content-Length, Transfer-Encoding,
 * Content-Type or Authorization given twice, Content-Length with Transfer-Encoding (request
 * smuggling), an HTTP/1.1 request with an empty Host. */
static const char *bad_headers(struct MHD_Connection *conn, const char *version) {
  header_check h = {0};
  MHD_get_connection_values_n(conn, MHD_HEADER_KIND, check_header, &h);
  if (h.bad) return "{\"error\": \"headers: a malformed header name or value\"}";
  if (h.host > 1 || h.content_length > 1 || h.transfer_encoding > 1 || h.content_type > 1 ||
      h.authorization > 1 || (h.content_length && h.transfer_encoding))
    return "{\"error\": \"headers: Host, Content-Length, Transfer-Encoding, Content-Type or "
           "Authorization is repeated or ambiguous\"}";
  const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
  if (!strcmp(version, MHD_HTTP_VERSION_1_1) && (!host || !*host))
    return "{\"error\": \"headers: HTTP/1.1 needs a Host\"}";
  return NULL;
}

/* MHD calls this when the headers are in (*ctx NULL), once per piece of body, and once more with
 * no data when the body is complete. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **ctx) {
  chai_server *s = cls;
  chai_server_request *r = *ctx;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->srv = s;
    r->conn = conn;
    r->method = method;
    r->path = url;
    *ctx = r;
    const char *bad = bad_headers(conn, version);
    if (bad) return answer_error(r, 400, bad);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
      char *end;
      errno = 0;
      unsigned long long n = strtoull(cl, &end, 10);
      if (errno || end == cl || *end || n > s->max_body) r->too_large = 1;
    }
    if (r->too_large)
      return answer_error(r, 413, "{\"error\": \"body: larger than the limit of the server\"}");
    return MHD_YES;
  }
  if (*data_size) {
    if (!r->answered && !r->too_large && append_body(r, data, *data_size) != 0) {
      r->too_large = 1;
      free(r->body);
      r->body = NULL;
      r->len = r->cap = 0;
    }
    *data_size = 0;
    return MHD_YES;
  }
  if (r->answered) return r->result;
  if (r->too_large)
    return answer_error(r, 413, "{\"error\": \"body: larger than the limit of the server\"}");
  s->handler(s->ud, r);
  if (!r->answered) return answer_error(r, 500, "{\"error\": \"the request was not answered\"}");
  return r->result;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)conn, (void)toe;
  chai_server_request *r = *ctx;
  if (!r) return;
  free(r->body);
  free(r);
  *ctx = NULL;
}

/* ---- the server ---- */

/* A listening socket on host:port in *out. */
static chai_status listen_on(const char *host, int port, int *ipv6, int *out) {
  *out = -1;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    sl = sizeof *a4;
    *ipv6 = 0;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    sl = sizeof *a6;
    *ipv6 = 1;
  } else {
    return chai_error(CHAI_ERR_ARG, "server: host '%s' is not a numeric IPv4 or IPv6 address",
                      host);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return chai_error(CHAI_ERR_IO, "server: socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (*ipv6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
    chai_status st = chai_error(CHAI_ERR_IO, "server: cannot listen on %s port %d: %s", host, port,
                                strerror(errno));
    close(fd);
    return st;
  }
  *out = fd;
  return CHAI_OK;
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

chai_status chai_server_open(const chai_server_config *cfg, chai_server **out) {
  *out = NULL;
  if (!cfg || !cfg->handler) return chai_error(CHAI_ERR_ARG, "server: no request handler");
  if (cfg->port < 0 || cfg->port > 65535)
    return chai_error(CHAI_ERR_ARG, "server: port %d is outside 0..65535", cfg->port);
  chai_server *s = calloc(1, sizeof *s);
  if (!s) return chai_error(CHAI_ERR_NOMEM, "server: out of memory");
  s->handler = cfg->handler;
  s->ud = cfg->ud;
  s->max_body = cfg->max_body ? cfg->max_body : 64 * 1024;
  s->max_stream = cfg->max_stream_buffer ? cfg->max_stream_buffer : 1024 * 1024;
  int ipv6 = 0;
  chai_status st = listen_on(cfg->host ? cfg->host : "127.0.0.1", cfg->port, &ipv6, &s->listen_fd);
  if (st != CHAI_OK) {
    free(s);
    return st;
  }
  s->port = bound_port(s->listen_fd);
  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | (ipv6 ? MHD_USE_IPv6 : 0);
  s->d = MHD_start_daemon(
      flags, (uint16_t)s->port, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->timeout_s ? cfg->timeout_s : 15),
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections ? cfg->max_connections : 256),
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
      MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
  if (!s->d) {
    close(s->listen_fd);
    free(s);
    return chai_error(CHAI_ERR_IO, "server: libmicrohttpd could not start");
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
  s->epoll_fd = info ? info->epoll_fd : -1;
  if (s->epoll_fd < 0) {
    MHD_stop_daemon(s->d);
    free(s);
    return chai_error(CHAI_ERR_IO, "server: libmicrohttpd has no epoll descriptor");
  }
  *out = s;
  return CHAI_OK;
}

int chai_server_port(const chai_server *s) {
  return s->port;
}

chai_status chai_server_run(chai_server *s, int timeout_ms) {
  if (s->in_run) return chai_error(CHAI_ERR_STATE, "server: run called from a handler");
  MHD_UNSIGNED_LONG_LONG mhd_ms;
  int wait = timeout_ms < 0 ? 0 : timeout_ms;
  if (MHD_get_timeout(s->d, &mhd_ms) == MHD_YES && mhd_ms < (MHD_UNSIGNED_LONG_LONG)wait)
    wait = (int)mhd_ms;
  if (wait > 0) {
    struct pollfd p = {.fd = s->epoll_fd, .events = POLLIN};
    if (poll(&p, 1, wait) < 0 && errno != EINTR)
      return chai_error(CHAI_ERR_IO, "server: poll: %s", strerror(errno));
  }
  s->in_run = 1;
  enum MHD_Result ok = MHD_run(s->d);
  s->in_run = 0;
  return ok == MHD_YES ? CHAI_OK : chai_error(CHAI_ERR_IO, "server: libmicrohttpd failed to run");
}

void chai_server_stop_accepting(chai_server *s) {
  if (!s || s->listen_fd < 0) return;
  MHD_socket fd = MHD_quiesce_daemon(s->d);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  s->listen_fd = -1;
}

void chai_server_close(chai_server *s) {
  if (!s) return;
  /* Suspended connections must be resumed before the daemon stops; dropping the streams makes
   * their next read close them. */
  for (chai_server_stream *st = s->streams; st; st = st->next) {
    st->dropped = 1;
    stream_wake(st);
  }
  MHD_run(s->d);
  MHD_stop_daemon(s->d); /* closes the listening socket unless stop_accepting already did */
  while (s->streams) {   /* responses MHD did not free (should not happen): detach */
    chai_server_stream *st = s->streams;
    st->closed = 1;
    st->conn = NULL;
    stream_unlink(st);
  }
  free(s);
}
