/* The server room (chai/server.h, chai/proc.h) through its C API: a server driven from this thread
 * while a client thread talks to it over loopback — whole answers, the body limit, unanswered
 * requests, bad answers, streams (written piece by piece, a client that leaves, a client that
 * does not read), stop_accepting, close with a stream still held — and child processes: exit
 * codes and logs, signals to a group, a program that cannot run, alive(), the parent-death
 * signal, and the stop-signal counter. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chai/proc.h"
#include "chai/server.h"
#include "check.h"

/* ---- a blocking client ---- */

static int port;

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* Sends `req` and reads until the server closes (requests say Connection: close). Returns a
 * malloc'd response. */
static char *roundtrip(const char *req, size_t len) {
  int fd = dial();
  if (fd < 0) return NULL;
  (void)!send(fd, req, len, MSG_NOSIGNAL);
  size_t cap = 4096, n = 0;
  char *out = malloc(cap);
  ssize_t r;
  while ((r = recv(fd, out + n, cap - n - 1, 0)) > 0) {
    n += (size_t)r;
    if (n + 1 == cap) out = realloc(out, cap *= 2);
  }
  out[n] = 0;
  close(fd);
  return out;
}

static char *get(const char *path) {
  char req[256];
  int n =
      snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
  return roundtrip(req, (size_t)n);
}

/* ---- the handler ---- */

static chai_server_stream *held; /* the stream of /stream, written by the main loop */
static int handled;
static chai_status second_answer, bad_status, bad_header;

static void handler(void *ud, chai_server_request *r) {
  (void)ud;
  handled++;
  const char *path = chai_server_request_path(r);
  static const char *const hdrs[] = {"Content-Type", "text/plain", "X-Test", "yes", NULL};
  char msg[256];
  if (!strcmp(path, "/hello")) {
    chai_server_respond(r, 200, hdrs, "hello", 5);
    second_answer = chai_server_respond(r, 200, NULL, "again", 5);
  } else if (!strcmp(path, "/echo")) {
    size_t len;
    const char *body = chai_server_request_body(r, &len);
    const char *token = chai_server_request_arg(r, "token");
    const char *h = chai_server_request_header(r, "x-MiXeD");
    int n = snprintf(msg, sizeof msg, "%s %zu [%s] token=%s h=%s", chai_server_request_method(r),
                     len, body, token ? token : "-", h ? h : "-");
    chai_server_respond(r, 201, NULL, msg, (size_t)n);
  } else if (!strcmp(path, "/bad")) {
    bad_status = chai_server_respond(r, 700, NULL, "", 0);
    static const char *const evil[] = {"X-Evil", "a\r\nSet-Cookie: x=1", NULL};
    bad_header = chai_server_respond(r, 200, evil, "", 0);
  } else if (!strcmp(path, "/stream")) {
    chai_server_stream_release(held);
    chai_server_respond_stream(r, 200, hdrs, &held);
  } else if (!strcmp(path, "/a%00b")) {
    chai_server_respond(r, 200, NULL, "kept", 4);
  } /* anything else is left unanswered */
}

/* ---- the client thread ---- */

typedef struct script {
  char *hello, *echo, *big, *unanswered, *bad, *nul, *stream, *header_twice;
  int done;
} script;

static script sc;

static void *client(void *arg) {
  (void)arg;
  sc.hello = get("/hello");
  const char post[] = "POST /echo?token=t%20k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "X-Mixed: v\r\nContent-Length: 5\r\n\r\nabcde";
  sc.echo = roundtrip(post, sizeof post - 1);
  char big[512];
  int n = snprintf(big, sizeof big,
                   "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 101"
                   "\r\n\r\n");
  sc.big = roundtrip(big, (size_t)n);
  sc.unanswered = get("/nothing");
  sc.bad = get("/bad");
  sc.nul = get("/a%00b");
  const char twice[] = "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nContent-Type: b\r\n"
                       "Connection: close\r\n\r\n";
  sc.header_twice = roundtrip(twice, sizeof twice - 1);
  sc.stream = get("/stream"); /* the main loop writes "one " "two" and ends it */
  __atomic_store_n(&sc.done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void serve_until_done(chai_server *s) {
  int wrote = 0;
  for (int i = 0; i < 2000 && !__atomic_load_n(&sc.done, __ATOMIC_SEQ_CST); i++) {
    CHECK(chai_server_run(s, 10) == CHAI_OK || 1);
    if (held && !wrote) {
      CHECK_OK(chai_server_stream_write(held, "one ", 4));
      CHECK_OK(chai_server_stream_write(held, "two", 3));
      chai_server_stream_end(held);
      CHECK(chai_server_stream_closed(held));
      CHECK_ERR(chai_server_stream_write(held, "x", 1), CHAI_ERR_STATE, "closed");
      wrote = 1;
    }
  }
}

static void test_server(void) {
  chai_server *s = NULL;
  chai_server_config cfg = {.host = "no.such.host", .port = 0, .handler = handler};
  CHECK_ERR(chai_server_open(&cfg, &s), CHAI_ERR_ARG, "not a numeric IPv4 or IPv6 address");
  cfg.host = "127.0.0.1";
  cfg.port = 70000;
  CHECK_ERR(chai_server_open(&cfg, &s), CHAI_ERR_ARG, "outside 0..65535");
  cfg.port = 0;
  cfg.handler = NULL;
  CHECK_ERR(chai_server_open(&cfg, &s), CHAI_ERR_ARG, "no request handler");
  cfg.handler = handler;
  cfg.max_body = 100;
  cfg.timeout_s = 5;
  CHECK_OK(chai_server_open(&cfg, &s));
  if (!s) return;
  port = chai_server_port(s);
  CHECK(port > 0);
  chai_server *twin = NULL;
  cfg.port = port;
  CHECK_ERR(chai_server_open(&cfg, &twin), CHAI_ERR_IO, "cannot listen on 127.0.0.1 port");

  pthread_t t;
  pthread_create(&t, NULL, client, NULL);
  serve_until_done(s);
  pthread_join(t, NULL);

  CHECK(sc.hello && strstr(sc.hello, "HTTP/1.1 200") && strstr(sc.hello, "X-Test: yes") &&
        strstr(sc.hello, "\r\n\r\nhello"));
  CHECK(second_answer == CHAI_ERR_STATE);
  CHECK(sc.echo && strstr(sc.echo, "HTTP/1.1 201") &&
        strstr(sc.echo, "POST 5 [abcde] token=t k h=v"));
  CHECK(sc.big && strstr(sc.big, "HTTP/1.1 413"));
  CHECK(sc.unanswered && strstr(sc.unanswered, "HTTP/1.1 500") &&
        strstr(sc.unanswered, "not answered"));
  CHECK(bad_status == CHAI_ERR_ARG);
  CHECK(bad_header == CHAI_ERR_ARG);
  CHECK(sc.bad && strstr(sc.bad, "HTTP/1.1 500") && !strstr(sc.bad, "Set-Cookie"));
  CHECK(sc.nul && strstr(sc.nul, "HTTP/1.1 200") && strstr(sc.nul, "kept")); /* %00 kept as is */
  CHECK(sc.header_twice && strstr(sc.header_twice, "HTTP/1.1 400"));
  CHECK(sc.stream && strstr(sc.stream, "Transfer-Encoding: chunked") && strstr(sc.stream, "one ") &&
        strstr(sc.stream, "two"));
  CHECK(handled == 6); /* 413 and the repeated header never reach the handler */

  /* A client that leaves: the stream notices. */
  int fd = dial();
  const char sreq[] = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
  (void)!send(fd, sreq, sizeof sreq - 1, MSG_NOSIGNAL);
  chai_server_stream *prev = held;
  for (int i = 0; i < 200 && held == prev; i++)
    chai_server_run(s, 10);
  CHECK(held != prev && held && !chai_server_stream_closed(held));
  close(fd);
  int noticed = 0;
  for (int i = 0; i < 300 && !noticed; i++) {
    if (held) chai_server_stream_write(held, "ping\n", 5);
    chai_server_run(s, 10);
    noticed = chai_server_stream_closed(held);
  }
  CHECK(noticed);

  /* A client that does not read: past the buffer limit the stream is dropped. */
  fd = dial();
  (void)!send(fd, sreq, sizeof sreq - 1, MSG_NOSIGNAL);
  prev = held;
  for (int i = 0; i < 200 && held == prev; i++)
    chai_server_run(s, 10);
  static char chunk[64 * 1024];
  memset(chunk, 'x', sizeof chunk);
  chai_status st = CHAI_OK;
  for (int i = 0; i < 200 && st == CHAI_OK; i++) {
    st = chai_server_stream_write(held, chunk, sizeof chunk);
    chai_server_run(s, 0);
  }
  CHECK(st == CHAI_ERR_IO);
  CHECK(chai_server_stream_closed(held));
  close(fd);

  /* A stream still open when the server closes, then released by its owner. */
  fd = dial();
  (void)!send(fd, sreq, sizeof sreq - 1, MSG_NOSIGNAL);
  prev = held;
  for (int i = 0; i < 200 && held == prev; i++)
    chai_server_run(s, 10);
  CHECK(held && !chai_server_stream_closed(held));

  chai_server_stop_accepting(s);
  CHECK(dial() < 0);
  chai_server_close(s);
  CHECK(chai_server_stream_closed(held));
  CHECK_ERR(chai_server_stream_write(held, "x", 1), CHAI_ERR_STATE, "closed");
  chai_server_stream_release(held);
  held = NULL;
  close(fd);
  free(sc.hello), free(sc.echo), free(sc.big), free(sc.unanswered), free(sc.bad), free(sc.nul);
  free(sc.stream), free(sc.header_twice);
}

/* ---- processes ---- */

static char dir[256];

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static void test_proc(void) {
  char log[300];
  snprintf(log, sizeof log, "%s/out.log", dir);
  chai_proc *p = NULL;
  chai_proc_exit how;
  char *sh_exit[] = {"sh", "-c", "echo to-out; echo to-err >&2; exit 3", NULL};
  chai_proc_opts o = {.log_path = log};
  CHECK_OK(chai_proc_spawn("/bin/sh", sh_exit, &o, &p));
  CHECK(chai_proc_wait(p, 10000, &how) == 1);
  CHECK(how.exited == 1 && how.code == 3 && how.signal == 0);
  CHECK(chai_proc_poll(p, &how) == 1 && how.code == 3);
  CHECK_ERR(chai_proc_signal(p, SIGTERM), CHAI_ERR_STATE, "has ended");
  char *text = slurp(log);
  CHECK(text && strstr(text, "to-out") && strstr(text, "to-err"));
  chai_proc_free(p);

  /* A group leader: the signal reaches its children too. */
  char *sh_group[] = {"sh", "-c", "sleep 30 & sleep 30; wait", NULL};
  chai_proc_opts g = {.new_group = 1};
  CHECK_OK(chai_proc_spawn("/bin/sh", sh_group, &g, &p));
  CHECK(chai_proc_poll(p, &how) == 0);
  int seen = 0; /* once the child has exec'd the shell */
  for (int i = 0; i < 300 && !seen; i++) {
    seen = chai_proc_alive(chai_proc_pid(p), "sleep 30");
    if (!seen) usleep(10000);
  }
  CHECK(seen);
  CHECK(!chai_proc_alive(chai_proc_pid(p), "no such words"));
  CHECK_OK(chai_proc_signal(p, SIGTERM));
  CHECK(chai_proc_wait(p, 10000, &how) == 1);
  CHECK(how.exited == 0 && how.signal == SIGTERM);
  CHECK(!chai_proc_alive(chai_proc_pid(p), NULL));
  chai_proc_free(p);

  char *missing[] = {"nope", NULL};
  CHECK_OK(chai_proc_spawn("/no/such/program", missing, &o, &p));
  CHECK(chai_proc_wait(p, 10000, &how) == 1 && how.exited && how.code == 127);
  CHECK(strstr(slurp(log), "cannot execute"));
  chai_proc_free(p);

  chai_proc_opts badlog = {.log_path = "/no/such/folder/x.log"};
  CHECK_ERR(chai_proc_spawn("/bin/true", missing, &badlog, &p), CHAI_ERR_IO, "cannot open log");
  char *none[] = {NULL};
  CHECK_ERR(chai_proc_spawn("/bin/true", none, NULL, &p), CHAI_ERR_ARG, "no program");

  /* The parent-death signal: a helper starts `sleep 60` and exits; sleep must get SIGTERM. */
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t helper = fork();
  if (helper == 0) {
    char *sleeper[] = {"sleep", "60", NULL};
    chai_proc_opts d = {.parent_death_signal = SIGTERM};
    chai_proc *q = NULL;
    int pid = chai_proc_spawn("/bin/sleep", sleeper, &d, &q) == CHAI_OK ? chai_proc_pid(q) : -1;
    (void)!write(fds[1], &pid, sizeof pid);
    _exit(0);
  }
  int orphan = -1;
  CHECK(read(fds[0], &orphan, sizeof orphan) == (ssize_t)sizeof orphan && orphan > 0);
  waitpid(helper, NULL, 0);
  int gone = 0;
  for (int i = 0; i < 300 && !gone; i++) {
    gone = !chai_proc_alive(orphan, "sleep");
    if (!gone) usleep(10000);
  }
  CHECK(gone);
  close(fds[0]), close(fds[1]);

  /* Stop signals only count. */
  CHECK_OK(chai_stop_signals_install());
  CHECK(chai_stop_signal_count() == 0);
  raise(SIGTERM);
  raise(SIGINT);
  CHECK(chai_stop_signal_count() == 2);
  CHECK(chai_stop_signal_last() == SIGINT);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/chai_test_server_XXXXXX");
  if (!mkdtemp(dir)) return 1;
  test_server();
  test_proc();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  (void)!system(cmd);
  return chai_test_finish();
}
