/* A loopback HTTP server that plays the Hugging Face Hub for the Hub client's tests.
 *
 *   hub_server [--log FILE] [--lifetime SECONDS] [--idle SECONDS]
 *   hub_server --dump NAME       (writes the bytes of fixture file NAME of org/tiny to stdout)
 *
 * It listens on two ephemeral ports of 127.0.0.1 only — the "Hub" and a "CDN" (another port, so
 * libcurl counts it as another host and must drop the Authorization header on the redirect) — and
 * prints "HUBPORT CDNPORT\n" on stdout. Every request is served by a forked child (so two clients
 * can download at once) and logged as one line to FILE:
 *   <hub|cdn> <METHOD> <raw path> auth=<0|1> range=<Range header or ->
 * It exits on GET /__quit, after --idle seconds without a request (default 30) or after --lifetime
 * seconds in all (default 120), killing any child still serving.
 *
 * What it serves is in hub_fixture.h: Hub resolve URLs with X-Repo-Commit / ETag (weak, quoted) /
 * X-Linked-Etag / X-Linked-Size, 302 to the CDN for LFS files, 404 with X-Error-Code
 * (RepoNotFound, RevisionNotFound, EntryNotFound + X-Repo-Commit), 401 for org/private without
 * "Bearer FX_TOKEN", 403 for org/gated, a 307 relative redirect for the renamed org/old-name,
 * facebook/opt-125m as an alias of org/tiny (for the examples in docs/hub.md), and a few JSON
 * endpoints for chai_http_get (/api/echo, /api/error, /api/redirect-*; /echo on the CDN).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hub_fixture.h"

static int log_fd = -1;
static int hub_port, cdn_port;
static volatile sig_atomic_t quit_flag;

static void on_quit(int sig) {
  (void)sig;
  quit_flag = 1;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w, n -= (size_t)w;
  }
  return 0;
}

static void sendf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sendf(int fd, const char *fmt, ...) {
  char buf[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) send_all(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* ------------------------------------------------------------------ request */

typedef struct req {
  char method[16];
  char path[4096]; /* raw, percent-encoded */
  char auth[512];
  char range[128];
  char xtest[128];
} req;

static int read_request(int fd, req *r) {
  char buf[16384];
  size_t n = 0;
  memset(r, 0, sizeof *r);
  while (n < sizeof buf - 1) {
    ssize_t k = recv(fd, buf + n, sizeof buf - 1 - n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    n += (size_t)k;
    buf[n] = 0;
    if (strstr(buf, "\r\n\r\n")) break;
  }
  if (sscanf(buf, "%15s %4095s", r->method, r->path) != 2) return -1;
  for (char *line = strstr(buf, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
    char *l = line + 2, *end = strstr(l, "\r\n");
    if (!end) break;
    struct {
      const char *name;
      char *dst;
      size_t cap;
    } want[] = {{"Authorization:", r->auth, sizeof r->auth},
                {"Range:", r->range, sizeof r->range},
                {"X-Test:", r->xtest, sizeof r->xtest}};
    for (int i = 0; i < 3; i++) {
      size_t nl = strlen(want[i].name);
      if (strncasecmp(l, want[i].name, nl) == 0) {
        const char *v = l + nl;
        while (*v == ' ')
          v++;
        size_t vn = (size_t)(end - v) < want[i].cap - 1 ? (size_t)(end - v) : want[i].cap - 1;
        memcpy(want[i].dst, v, vn);
        want[i].dst[vn] = 0;
      }
    }
  }
  return 0;
}

static void log_request(const char *who, const req *r) {
  if (log_fd < 0) return;
  char line[5000];
  int n = snprintf(line, sizeof line, "%s %s %s auth=%d range=%s\n", who, r->method, r->path,
                   r->auth[0] != 0, r->range[0] ? r->range : "-");
  if (n > 0) (void)!write(log_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void url_decode(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '%' && s[1] && s[2]) {
      char hx[3] = {s[1], s[2], 0};
      *o++ = (char)strtol(hx, NULL, 16);
      s += 2;
    } else {
      *o++ = *s;
    }
  }
  *o = 0;
}

static void reply(int fd, const req *r, int code, const char *status, const char *headers,
                  const char *body) {
  size_t n = body ? strlen(body) : 0;
  sendf(fd, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: %zu\r\n%s\r\n", code, status, n,
        headers ? headers : "");
  if (body && strcmp(r->method, "HEAD") != 0) send_all(fd, body, n);
}

/* ------------------------------------------------------------------ CDN */

static void serve_cdn(int fd, const req *r) {
  if (strncmp(r->path, "/echo", 5) == 0) {
    char body[1024];
    snprintf(body, sizeof body, "{\"auth\": \"%s\", \"port\": \"cdn\"}", r->auth);
    reply(fd, r, 200, "OK", "Content-Type: application/json\r\n", body);
    return;
  }
  int idx = -1;
  if (sscanf(r->path, "/cdn/%d/", &idx) != 1 || idx < 0 || idx >= FX_NFILES || fx_files[idx].text) {
    reply(fd, r, 404, "Not Found", NULL, "no such blob");
    return;
  }
  const fx_file *f = &fx_files[idx];
  long size = fx_size(f), start = 0, end = size - 1;
  int ranged = 0;
  if (r->range[0] && f->mode != FX_NORANGE) {
    long a = -1, b = -1;
    int k = sscanf(r->range, "bytes=%ld-%ld", &a, &b);
    if (k < 1 || a < 0) {
      reply(fd, r, 400, "Bad Request", NULL, "bad range");
      return;
    }
    if (a >= size) {
      char h[128];
      snprintf(h, sizeof h, "Content-Range: bytes */%ld\r\n", size);
      reply(fd, r, 416, "Range Not Satisfiable", h, "");
      return;
    }
    start = f->mode == FX_BADRANGE ? 0 : a;
    if (k == 2 && b < end) end = b;
    ranged = 1;
  }
  long len = end - start + 1;
  unsigned char *bytes = malloc((size_t)size);
  if (!bytes) return;
  fx_fill(f, 0, size, bytes);
  if (ranged)
    sendf(fd,
          "HTTP/1.1 206 Partial Content\r\nConnection: close\r\nAccept-Ranges: bytes\r\n"
          "Content-Type: application/octet-stream\r\nContent-Range: bytes %ld-%ld/%ld\r\n"
          "Content-Length: %ld\r\n\r\n",
          start, end, size, len);
  else
    sendf(fd,
          "HTTP/1.1 200 OK\r\nConnection: close\r\nAccept-Ranges: bytes\r\n"
          "Content-Type: application/octet-stream\r\nContent-Length: %ld\r\n\r\n",
          len);
  if (strcmp(r->method, "HEAD") != 0) {
    const unsigned char *p = bytes + start;
    switch (f->mode) {
    case FX_CUT: send_all(fd, p, (size_t)(ranged ? len : len / 2)); break;
    case FX_FLAKY: send_all(fd, p, (size_t)(len / 4 > 0 ? len / 4 : 1)); break;
    case FX_STALL:
      if (ranged) {
        send_all(fd, p, (size_t)len);
      } else {
        send_all(fd, p, (size_t)len / 2);
        sleep_ms(3000);
      }
      break;
    case FX_SLOW:
      for (long off = 0; off < len; off += 16384) {
        if (send_all(fd, p + off, (size_t)(len - off < 16384 ? len - off : 16384))) break;
        sleep_ms(10);
      }
      break;
    default: send_all(fd, p, (size_t)len);
    }
  }
  free(bytes);
}

/* ------------------------------------------------------------------ Hub */

static const char *commit_of(const char *repo, const char *rev, int *pr1) {
  *pr1 = 0;
  if (strcmp(repo, "org/tiny") == 0) {
    if (!strcmp(rev, "main") || !strcmp(rev, "v1.0") || !strcmp(rev, FX_C_MAIN)) return FX_C_MAIN;
    if (!strcmp(rev, "refs/pr/1") || !strcmp(rev, "refs/pr/35") || !strcmp(rev, FX_C_PR1))
      return *pr1 = 1, FX_C_PR1;
    return NULL;
  }
  const char *c = !strcmp(repo, "datasets/org/data") ? FX_C_DATA : FX_C_PRIV;
  return !strcmp(rev, "main") || !strcmp(rev, c) ? c : NULL;
}

static void serve_resolve(int fd, const req *r, const char *repo, const char *rest) {
  /* rest = "<rev>/<path>" still encoded */
  char rev[512], path[4096], h[2048];
  /* the docs' examples name the real repo: serve it as org/tiny (main has the .bin, the PR ref
   * refs/pr/35 adds model.safetensors, as on the real Hub) */
  if (!strcmp(repo, "facebook/opt-125m")) repo = "org/tiny";
  const char *slash = strchr(rest, '/');
  if (!slash || (size_t)(slash - rest) >= sizeof rev) {
    reply(fd, r, 400, "Bad Request", NULL, "bad resolve URL");
    return;
  }
  snprintf(rev, sizeof rev, "%.*s", (int)(slash - rest), rest);
  snprintf(path, sizeof path, "%s", slash + 1);
  char *q = strchr(path, '?');
  if (q) *q = 0;
  if (!strcmp(repo, "org/old-name")) {
    snprintf(h, sizeof h, "Location: /org/tiny/resolve/%s\r\n", rest);
    reply(fd, r, 307, "Temporary Redirect", h, "renamed");
    return;
  }
  int known = !strcmp(repo, "org/tiny") || !strcmp(repo, "org/private") ||
              !strcmp(repo, "org/gated") || !strcmp(repo, "datasets/org/data");
  if (!known) {
    reply(fd, r, 404, "Not Found",
          "X-Error-Code: RepoNotFound\r\nX-Error-Message: Repository not found\r\n",
          "Repository not found");
    return;
  }
  if (!strcmp(repo, "org/private") && strcmp(r->auth, "Bearer " FX_TOKEN) != 0) {
    reply(fd, r, 401, "Unauthorized",
          "X-Error-Code: RepoNotFound\r\nX-Error-Message: Invalid credentials in Authorization "
          "header\r\n",
          "Invalid credentials");
    return;
  }
  if (!strcmp(repo, "org/gated")) {
    reply(fd, r, 403, "Forbidden",
          "X-Error-Code: GatedRepo\r\nX-Error-Message: Access to model org/gated is restricted\r\n",
          "gated");
    return;
  }
  url_decode(rev);
  url_decode(path);
  int pr1;
  const char *commit = commit_of(repo, rev, &pr1);
  if (!commit) {
    reply(fd, r, 404, "Not Found",
          "X-Error-Code: RevisionNotFound\r\nX-Error-Message: Invalid rev id\r\n",
          "Revision not found");
    return;
  }
  const fx_file *f = fx_find(repo, path);
  if (!f || !(pr1 ? f->in_pr1 : f->in_main)) {
    snprintf(h, sizeof h,
             "X-Error-Code: EntryNotFound\r\nX-Error-Message: Entry not found\r\n"
             "X-Repo-Commit: %s\r\n",
             commit);
    reply(fd, r, 404, "Not Found", h, "Entry not found");
    return;
  }
  if (f->text) {
    char etag[41];
    fx_git_etag(f, etag);
    long n = fx_size(f);
    sendf(fd,
          "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: "
          "%ld\r\nETag: W/\"%s\"\r\nX-Repo-Commit: %s\r\n\r\n",
          n, etag, commit);
    if (strcmp(r->method, "HEAD") != 0) send_all(fd, f->text, (size_t)n);
    return;
  }
  snprintf(h, sizeof h,
           "Location: http://127.0.0.1:%d/cdn/%d/%s?sig=chai-test\r\nX-Repo-Commit: %s\r\n"
           "X-Linked-Etag: \"%s\"\r\nX-Linked-Size: %ld\r\nETag: \"0123456789abcdef0123456789a"
           "bcdef01234567\"\r\n",
           cdn_port, (int)(f - fx_files), f->name, commit,
           f->mode == FX_BADSUM ? FX_WRONG_SHA : f->sha256, f->size);
  reply(fd, r, 302, "Found", h, "");
}

static void serve_hub(int fd, const req *r) {
  char h[512];
  if (!strcmp(r->path, "/__quit")) {
    reply(fd, r, 200, "OK", NULL, "bye");
    kill(getppid(), SIGUSR1);
    return;
  }
  if (!strcmp(r->path, "/api/echo")) {
    char body[1024];
    snprintf(body, sizeof body, "{\"auth\": \"%s\", \"x_test\": \"%s\", \"port\": \"hub\"}",
             r->auth, r->xtest);
    reply(fd, r, 200, "OK", "Content-Type: application/json\r\n", body);
    return;
  }
  if (!strcmp(r->path, "/api/error")) {
    reply(fd, r, 500, "Internal Server Error", "Content-Type: application/json\r\n",
          "{\"error\": \"boom from the test server\"}");
    return;
  }
  if (!strcmp(r->path, "/api/redirect-local")) {
    reply(fd, r, 302, "Found", "Location: /api/echo\r\n", "");
    return;
  }
  if (!strcmp(r->path, "/api/redirect-cdn")) {
    snprintf(h, sizeof h, "Location: http://127.0.0.1:%d/echo\r\n", cdn_port);
    reply(fd, r, 302, "Found", h, "");
    return;
  }
  /* The datasets-server and Hub API for chai.data's /rows client: dataset org/rows-data, config
   * "default", split "validation", 250 rows "s<i> " with label i % 2; pages of at most 100. */
  if (!strcmp(r->path, "/api/datasets/org/rows-data/revision/main")) {
    reply(fd, r, 200, "OK", "Content-Type: application/json\r\n",
          "{\"id\": \"org/rows-data\", \"sha\": \"" FX_C_DATA "\"}");
    return;
  }
  if (!strncmp(r->path, "/rows?", 6)) {
    int offset = -1, length = -1;
    const char *o = strstr(r->path, "offset="), *l = strstr(r->path, "length=");
    if (o) offset = atoi(o + 7);
    if (l) length = atoi(l + 7);
    if (!strstr(r->path, "dataset=org%2Frows-data") || !strstr(r->path, "config=default") ||
        !strstr(r->path, "split=validation")) {
      reply(fd, r, 404, "Not Found", "Content-Type: application/json\r\n",
            "{\"error\": \"The dataset does not exist.\"}");
      return;
    }
    if (offset < 0 || length < 1 || length > 100) {
      reply(fd, r, 422, "Unprocessable Entity", "Content-Type: application/json\r\n",
            "{\"error\": \"length must be 1..100\"}");
      return;
    }
    static char body[65536];
    int n = snprintf(body, sizeof body, "{\"features\": [], \"rows\": [");
    for (int i = offset; i < offset + length && i < 250; i++)
      n += snprintf(body + n, sizeof body - (size_t)n,
                    "%s{\"row_idx\": %d, \"row\": {\"sentence\": \"s%d \", \"label\": %d, "
                    "\"idx\": %d}, \"truncated_cells\": []}",
                    i > offset ? ", " : "", i, i, i % 2, i);
    snprintf(body + n, sizeof body - (size_t)n,
             "], \"num_rows_total\": 250, \"num_rows_per_page\": 100, \"partial\": false}");
    reply(fd, r, 200, "OK", "Content-Type: application/json\r\n", body);
    return;
  }
  /* /[datasets/]org/name/resolve/rest */
  const char *p = r->path + 1;
  char repo[600];
  const char *res = strstr(p, "/resolve/");
  if (!res || (size_t)(res - p) >= sizeof repo) {
    reply(fd, r, 404, "Not Found", NULL, "no route");
    return;
  }
  snprintf(repo, sizeof repo, "%.*s", (int)(res - p), p);
  serve_resolve(fd, r, repo, res + strlen("/resolve/"));
}

/* ------------------------------------------------------------------ main */

static int listen_on(int *port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    close(s);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return s;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  double lifetime = 120, idle = 30;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dump") && i + 1 < argc) {
      const fx_file *f = fx_find("org/tiny", argv[i + 1]);
      if (!f) f = fx_find("datasets/org/data", argv[i + 1]);
      if (!f) return fprintf(stderr, "no fixture file %s\n", argv[i + 1]), 1;
      long n = fx_size(f);
      unsigned char *b = malloc((size_t)n + 1);
      fx_fill(f, 0, n, b);
      fwrite(b, 1, (size_t)n, stdout);
      free(b);
      return 0;
    } else if (!strcmp(argv[i], "--log") && i + 1 < argc) {
      log_fd = open(argv[++i], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (log_fd < 0) return perror(argv[i]), 1;
    } else if (!strcmp(argv[i], "--lifetime") && i + 1 < argc) {
      lifetime = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--idle") && i + 1 < argc) {
      idle = atof(argv[++i]);
    } else {
      fprintf(stderr, "usage: %s [--log FILE] [--lifetime S] [--idle S] | --dump NAME\n", argv[0]);
      return 2;
    }
  }
  int hub = listen_on(&hub_port), cdn = listen_on(&cdn_port);
  if (hub < 0 || cdn < 0) return perror("listen on 127.0.0.1"), 1;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {0};
  sa.sa_handler = on_quit;
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  printf("%d %d\n", hub_port, cdn_port);
  fflush(stdout);
  /* the test reads our ports from stdout; let it see EOF there once it has them */
  int devnull = open("/dev/null", O_WRONLY);
  if (devnull >= 0) dup2(devnull, STDOUT_FILENO), close(devnull);

  pid_t kids[512];
  int nkids = 0;
  double start = now(), last = start;
  while (!quit_flag && now() - start < lifetime && now() - last < idle) {
    struct pollfd pf[2] = {{hub, POLLIN, 0}, {cdn, POLLIN, 0}};
    int k = poll(pf, 2, 100);
    for (int i = 0; i < nkids;) /* reap */
      if (waitpid(kids[i], NULL, WNOHANG) == kids[i])
        kids[i] = kids[--nkids];
      else
        i++;
    if (k <= 0) continue;
    for (int w = 0; w < 2; w++) {
      if (!(pf[w].revents & POLLIN)) continue;
      int c = accept4(pf[w].fd, NULL, NULL, SOCK_CLOEXEC);
      if (c < 0) continue;
      last = now();
      pid_t pid = nkids < 512 ? fork() : -1;
      if (pid == 0) {
        close(hub), close(cdn);
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        req r;
        if (read_request(c, &r) == 0) {
          log_request(w == 0 ? "hub" : "cdn", &r);
          if (w == 0)
            serve_hub(c, &r);
          else
            serve_cdn(c, &r);
        }
        shutdown(c, SHUT_WR);
        close(c);
        _exit(0);
      }
      if (pid > 0) kids[nkids++] = pid;
      close(c);
    }
  }
  for (int i = 0; i < nkids; i++)
    kill(kids[i], SIGKILL);
  for (int i = 0; i < nkids; i++)
    waitpid(kids[i], NULL, 0);
  return 0;
}
