/* The Hub client against tests/hub/hub_server (a loopback server on 127.0.0.1 that plays the Hub,
 * started here and stopped at the end; it also exits by itself after 120 s): metadata headers,
 * 302 to a CDN on another port, the cache layout (blobs, refs, relative snapshot symlinks,
 * .no_exist), 404/401/403 messages, tokens, a cut transfer resumed with Range, a server that
 * ignores Range, a wrong checksum refused, a stalled transfer, offline mode, the fallback to the
 * cache when the Hub is unreachable, two processes downloading one file, Ctrl-C and resume, the
 * progress bar on a terminal, and chai_http_get. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chai/chai.h"
#include "check.h"
#include "hub_fixture.h"
#include "hub_internal.h"

static char root[256], cache_dir[512], log_path[512], endpoint[64];
static int hub_port, cdn_port;
static pid_t server_pid = -1;

/* ------------------------------------------------------------------ helpers */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void rm_rf(const char *p) {
  nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static long file_size(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static int is_symlink(const char *p) {
  struct stat sb;
  return lstat(p, &sb) == 0 && S_ISLNK(sb.st_mode);
}

static int exists(const char *p) {
  struct stat sb;
  return lstat(p, &sb) == 0;
}

static void write_file(const char *p, const void *data, size_t n) {
  FILE *f = fopen(p, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(data, 1, n, f) == n);
  fclose(f);
}

/* The whole file, NUL-terminated; caller frees. */
static char *slurp(const char *p, long *n) {
  FILE *f = fopen(p, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)len + 1);
  if (b && fread(b, 1, (size_t)len, f) != (size_t)len) len = 0;
  if (b) b[len] = 0;
  fclose(f);
  if (n) *n = len;
  return b;
}

/* Bytes of `path` equal the fixture's bytes, and for LFS files the sha256 is the published one. */
static int same_as_fixture(const char *path, const fx_file *fx) {
  long n;
  char *got = slurp(path, &n);
  if (!got) return 0;
  long want_n = fx_size(fx);
  unsigned char *want = malloc((size_t)want_n + 1);
  fx_fill(fx, 0, want_n, want);
  int ok = n == want_n && memcmp(got, want, (size_t)n) == 0;
  if (ok && !fx->text) {
    char hex[65];
    chai_sha256_hex(got, (size_t)n, hex);
    ok = strcmp(hex, fx->sha256) == 0;
  }
  free(got);
  free(want);
  return ok;
}

static long log_mark(void) {
  return file_size(log_path) < 0 ? 0 : file_size(log_path);
}

/* Lines of the server log after `mark` that contain every one of the (NULL-ended) needles. */
static int log_count(long mark, ...) {
  long n;
  char *all = slurp(log_path, &n);
  if (!all) return 0;
  int count = 0;
  for (char *line = all + (mark < n ? mark : n); *line;) {
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    va_list ap;
    va_start(ap, mark);
    int hit = 1;
    for (const char *s; (s = va_arg(ap, const char *));)
      hit &= strstr(line, s) != NULL;
    va_end(ap);
    count += hit;
    if (!end) break;
    line = end + 1;
  }
  free(all);
  return count;
}

static void start_server(void) {
  int fds[2];
  CHAI_ASSERT(pipe(fds) == 0);
  server_pid = fork();
  CHAI_ASSERT(server_pid >= 0);
  if (server_pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]), close(fds[1]);
    execl(CHAI_HUB_SERVER, CHAI_HUB_SERVER, "--log", log_path, "--lifetime", "120", "--idle", "60",
          (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char line[64] = "";
  ssize_t k = read(fds[0], line, sizeof line - 1);
  close(fds[0]);
  if (k <= 0 || sscanf(line, "%d %d", &hub_port, &cdn_port) != 2) {
    fprintf(stderr, "the test server %s did not start\n", CHAI_HUB_SERVER);
    exit(1);
  }
  snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", hub_port);
}

static void stop_server(void) {
  char url[128], *body = NULL;
  snprintf(url, sizeof url, "%s/__quit", endpoint);
  unsetenv("HF_HUB_OFFLINE");
  if (chai_http_get(url, NULL, &body, NULL) == CHAI_OK) free(body);
  for (int i = 0; i < 100; i++) {
    if (waitpid(server_pid, NULL, WNOHANG) == server_pid) return;
    usleep(50000);
  }
  kill(server_pid, SIGKILL);
  waitpid(server_pid, NULL, 0);
}

/* A clean environment: this test's endpoint and cache, no token, online. */
static void base_env(void) {
  char home[600];
  snprintf(home, sizeof home, "%s/home", root);
  setenv("HF_ENDPOINT", endpoint, 1);
  setenv("HF_HUB_CACHE", cache_dir, 1);
  setenv("HF_HOME", home, 1);
  unsetenv("HF_TOKEN");
  unsetenv("HF_TOKEN_PATH");
  unsetenv("HF_HUB_OFFLINE");
  unsetenv("HF_HUB_DOWNLOAD_TIMEOUT");
  setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1", 1);
}

static chai_status fetch(const char *repo, const char *file, const char *rev, chai_hub_file *f) {
  chai_hub_opts o = {.revision = rev, .quiet = 1};
  return chai_hub_fetch(repo, file, &o, f);
}

static void repo_path(char *out, size_t cap, const char *folder, const char *rest) {
  snprintf(out, cap, "%s/%s/%s", cache_dir, folder, rest);
}

static chai_hub_file F; /* big: keep it off the stack */

/* ------------------------------------------------------------------ tests */

static void test_text_file_layout(void) {
  base_env();
  const fx_file *fx = fx_find("org/tiny", "config.json");
  char etag[41], want[1024], p[1024], link[1024];
  fx_git_etag(fx, etag);
  long mark = log_mark();
  CHECK_OK(fetch("org/tiny", "config.json", NULL, &F));
  repo_path(want, sizeof want, "models--org--tiny", "snapshots/" FX_C_MAIN "/config.json");
  CHECK(strcmp(F.path, want) == 0);
  CHECK(strcmp(F.commit, FX_C_MAIN) == 0);
  CHECK(strcmp(F.etag, etag) == 0); /* W/"..." stripped */
  CHECK(F.size == fx_size(fx) && F.cached == 0 && F.missing == 0);
  CHECK(same_as_fixture(F.path, fx));
  CHECK(is_symlink(F.path));
  ssize_t k = readlink(F.path, link, sizeof link - 1);
  link[k > 0 ? k : 0] = 0;
  snprintf(want, sizeof want, "../../blobs/%s", etag);
  CHECK(strcmp(link, want) == 0);
  repo_path(p, sizeof p, "models--org--tiny", "refs/main");
  char *ref = slurp(p, NULL);
  CHECK(ref && strcmp(ref, FX_C_MAIN) == 0);
  free(ref);
  CHECK(log_count(mark, "hub HEAD /org/tiny/resolve/main/config.json", NULL) == 1);
  CHECK(log_count(mark, "hub GET /org/tiny/resolve/" FX_C_MAIN "/config.json", NULL) == 1);
  /* again: a HEAD for the metadata, no GET */
  mark = log_mark();
  char first[CHAI_HUB_PATH_MAX];
  strcpy(first, F.path);
  CHECK_OK(fetch("org/tiny", "config.json", NULL, &F));
  CHECK(F.cached == 1 && strcmp(F.path, first) == 0 && same_as_fixture(F.path, fx));
  CHECK(log_count(mark, "GET", NULL) == 0);
  CHECK(log_count(mark, "HEAD", NULL) == 1);
  /* the convenience form, and a buffer that is too small */
  char out[CHAI_HUB_PATH_MAX], tiny[8];
  CHECK_OK(chai_hub_download("org/tiny", NULL, NULL, "config.json", out, sizeof out));
  CHECK(strcmp(out, F.path) == 0);
  CHECK_ERR(chai_hub_download("org/tiny", "model", "main", "config.json", tiny, sizeof tiny),
            CHAI_ERR_ARG, "too long");
}

static void test_lfs_redirect_and_auth_drop(void) {
  base_env();
  setenv("HF_TOKEN", FX_TOKEN, 1);
  const fx_file *fx = fx_find("org/tiny", "pytorch_model.bin");
  long mark = log_mark();
  CHECK_OK(fetch("org/tiny", "pytorch_model.bin", "main", &F));
  CHECK(F.cached == 0 && F.size == fx->size && strcmp(F.etag, fx->sha256) == 0);
  CHECK(same_as_fixture(F.path, fx));
  char blob[1024];
  repo_path(blob, sizeof blob, "models--org--tiny", "blobs/");
  strcat(blob, fx->sha256);
  CHECK(file_size(blob) == fx->size && !is_symlink(blob));
  /* the token went to the Hub, not to the CDN the 302 pointed at */
  CHECK(log_count(mark, "hub HEAD /org/tiny/resolve/main/pytorch_model.bin auth=1", NULL) == 1);
  CHECK(log_count(mark, "hub GET", "pytorch_model.bin auth=1", NULL) == 1);
  CHECK(log_count(mark, "cdn GET /cdn/", "pytorch_model.bin?sig=chai-test auth=0", NULL) == 1);
  CHECK(log_count(mark, "auth=1", "cdn", NULL) == 0);
  /* the lock file of the blob */
  char lock[1024];
  snprintf(lock, sizeof lock, "%s/.locks/models--org--tiny/%s.lock", cache_dir, fx->sha256);
  CHECK(exists(lock));
  /* the same blob under refs/pr/1 is not downloaded again */
  mark = log_mark();
  CHECK_OK(fetch("org/tiny", "pytorch_model.bin", "refs/pr/1", &F));
  CHECK(F.cached == 1 && strstr(F.path, "/snapshots/" FX_C_PR1 "/pytorch_model.bin"));
  CHECK(log_count(mark, "cdn", NULL) == 0);
  CHECK(log_count(mark, "HEAD /org/tiny/resolve/refs%2Fpr%2F1/pytorch_model.bin", NULL) == 1);
}

static void test_nested_and_quoted_names(void) {
  base_env();
  const fx_file *fx = fx_find("org/tiny", "nested/deep/notes.txt");
  char etag[41], want[256], link[1024];
  fx_git_etag(fx, etag);
  CHECK_OK(fetch("org/tiny", "nested/deep/notes.txt", NULL, &F));
  ssize_t k = readlink(F.path, link, sizeof link - 1);
  link[k > 0 ? k : 0] = 0;
  snprintf(want, sizeof want, "../../../../blobs/%s", etag);
  CHECK(strcmp(link, want) == 0);
  CHECK(same_as_fixture(F.path, fx));
  long mark = log_mark();
  CHECK_OK(fetch("org/tiny", "weird name+%.txt", NULL, &F));
  CHECK(same_as_fixture(F.path, fx_find("org/tiny", "weird name+%.txt")));
  CHECK(strstr(F.path, "/weird name+%.txt") != NULL);
  CHECK(log_count(mark, "HEAD /org/tiny/resolve/main/weird%20name%2B%25.txt", NULL) == 1);
}

static void test_revisions_and_404(void) {
  base_env();
  char p[1024];
  /* model.safetensors exists only at refs/pr/1 (like facebook/opt-125m) */
  CHECK_OK(fetch("org/tiny", "model.safetensors", "refs/pr/1", &F));
  CHECK(strcmp(F.commit, FX_C_PR1) == 0);
  CHECK(same_as_fixture(F.path, fx_find("org/tiny", "model.safetensors")));
  repo_path(p, sizeof p, "models--org--tiny", "refs/refs/pr/1");
  char *ref = slurp(p, NULL);
  CHECK(ref && strcmp(ref, FX_C_PR1) == 0);
  free(ref);
  CHECK_ERR(fetch("org/tiny", "model.safetensors", "main", &F), CHAI_ERR_NETWORK,
            "file 'model.safetensors' not found in model repo 'org/tiny' at revision 'main'");
  CHECK(F.missing == CHAI_HUB_MISSING_FILE);
  repo_path(p, sizeof p, "models--org--tiny", ".no_exist/" FX_C_MAIN "/model.safetensors");
  CHECK(exists(p) && file_size(p) == 0);
  CHECK_ERR(fetch("org/tiny", "special_tokens_map.json", NULL, &F), CHAI_ERR_NETWORK, "404");
  CHECK(F.missing == CHAI_HUB_MISSING_FILE);
  /* a tag, and a commit used directly (no ref written for it) */
  CHECK_OK(fetch("org/tiny", "config.json", "v1.0", &F));
  CHECK(strcmp(F.commit, FX_C_MAIN) == 0);
  repo_path(p, sizeof p, "models--org--tiny", "refs/v1.0");
  CHECK(exists(p));
  CHECK_OK(fetch("org/tiny", "vocab.json", FX_C_MAIN, &F));
  CHECK(strstr(F.path, "/snapshots/" FX_C_MAIN "/vocab.json") != NULL);
  repo_path(p, sizeof p, "models--org--tiny", "refs/" FX_C_MAIN);
  CHECK(!exists(p));
  CHECK_ERR(fetch("org/tiny", "config.json", "nope", &F), CHAI_ERR_NETWORK,
            "revision 'nope' not found in model repo 'org/tiny'");
  CHECK(F.missing == CHAI_HUB_MISSING_REVISION);
  CHECK_ERR(fetch("org/nope", "config.json", NULL, &F), CHAI_ERR_NETWORK,
            "model repo 'org/nope' not found");
  CHECK(F.missing == CHAI_HUB_MISSING_REPO);
}

static void test_dataset_and_renamed_repo(void) {
  base_env();
  chai_hub_opts o = {.repo_type = "dataset", .quiet = 1};
  CHECK_OK(chai_hub_fetch("org/data", "train.jsonl", &o, &F));
  CHECK(strstr(F.path, "/datasets--org--data/snapshots/" FX_C_DATA "/train.jsonl") != NULL);
  CHECK(same_as_fixture(F.path, fx_find("datasets/org/data", "train.jsonl")));
  CHECK_OK(chai_hub_fetch("org/data", "data/part-0.parquet", &o, &F));
  CHECK(same_as_fixture(F.path, fx_find("datasets/org/data", "data/part-0.parquet")));
  char link[512];
  ssize_t k = readlink(F.path, link, sizeof link - 1);
  link[k > 0 ? k : 0] = 0;
  CHECK(strncmp(link, "../../../blobs/", 15) == 0);
  /* a renamed repo answers the HEAD with a relative 307 */
  long mark = log_mark();
  CHECK_OK(fetch("org/old-name", "merges.txt", NULL, &F));
  CHECK(strstr(F.path, "/models--org--old-name/snapshots/" FX_C_MAIN "/merges.txt") != NULL);
  CHECK(same_as_fixture(F.path, fx_find("org/tiny", "merges.txt")));
  CHECK(log_count(mark, "HEAD /org/tiny/resolve/main/merges.txt", NULL) == 1);
  char folder[64];
  CHECK_OK(chai_hub_repo_folder("org/data", "dataset", folder, sizeof folder));
  CHECK(strcmp(folder, "datasets--org--data") == 0);
  CHECK_OK(chai_hub_repo_folder("gpt2", NULL, folder, sizeof folder));
  CHECK(strcmp(folder, "models--gpt2") == 0);
  CHECK_OK(chai_hub_repo_folder("a/b", "space", folder, sizeof folder));
  CHECK(strcmp(folder, "spaces--a--b") == 0);
}

static void test_tokens(void) {
  base_env();
  CHECK_ERR(fetch("org/private", "config.json", NULL, &F), CHAI_ERR_NETWORK, "HF_TOKEN");
  CHECK(strstr(chai_last_error(), "401") != NULL && F.missing == CHAI_HUB_FOUND);
  setenv("HF_TOKEN", "hf_wrong", 1);
  CHECK_ERR(fetch("org/private", "config.json", NULL, &F), CHAI_ERR_NETWORK, "not accepted");
  setenv("HF_TOKEN", FX_TOKEN, 1);
  CHECK_OK(fetch("org/private", "config.json", NULL, &F));
  CHECK(same_as_fixture(F.path, fx_find("org/private", "config.json")));
  /* an explicit token option wins over the environment; "" sends none */
  chai_hub_opts o = {.token = "", .quiet = 1, .revision = FX_C_PRIV};
  CHECK_ERR(chai_hub_fetch("org/private", "config.json", &o, &F), CHAI_ERR_NETWORK, "401");
  unsetenv("HF_TOKEN");
  o.token = FX_TOKEN;
  CHECK_OK(chai_hub_fetch("org/private", "config.json", &o, &F));
  /* the token file: $HF_TOKEN_PATH, else $HF_HOME/token; whitespace trimmed */
  char p[600], tok[128];
  snprintf(p, sizeof p, "%s/tokfile", root);
  write_file(p, "  " FX_TOKEN "\n", strlen(FX_TOKEN) + 3);
  setenv("HF_TOKEN_PATH", p, 1);
  CHECK_OK(chai_hub_token(tok, sizeof tok));
  CHECK(strcmp(tok, FX_TOKEN) == 0);
  rm_rf(cache_dir); /* make the next fetch go to the network */
  CHECK_OK(fetch("org/private", "config.json", NULL, &F));
  unsetenv("HF_TOKEN_PATH");
  CHECK_OK(chai_hub_token(tok, sizeof tok));
  CHECK(tok[0] == 0);
  snprintf(p, sizeof p, "%s/home", root);
  mkdir(p, 0755);
  strcat(p, "/token");
  write_file(p, FX_TOKEN "\n", strlen(FX_TOKEN) + 1);
  CHECK_OK(chai_hub_token(tok, sizeof tok));
  CHECK(strcmp(tok, FX_TOKEN) == 0);
  CHECK_OK(fetch("org/private", "config.json", "main", &F));
  setenv("HF_TOKEN", "  hf_env_wins  ", 1);
  CHECK_OK(chai_hub_token(tok, sizeof tok));
  CHECK(strcmp(tok, "hf_env_wins") == 0);
  CHECK_ERR(chai_hub_token(tok, 4), CHAI_ERR_ARG, "too long");
  setenv("HF_TOKEN", "hf_a\x01z", 1);
  CHECK_ERR(chai_hub_token(tok, sizeof tok), CHAI_ERR_ARG, "control character");
  unsetenv("HF_TOKEN");
  remove(p);
  /* gated */
  CHECK_ERR(fetch("org/gated", "config.json", NULL, &F), CHAI_ERR_NETWORK, "403 Forbidden");
  CHECK(strstr(chai_last_error(), "HF_TOKEN") && strstr(chai_last_error(), "restricted"));
}

static void test_cut_and_resume(void) {
  base_env();
  const fx_file *fx = fx_find("org/tiny", "cut.bin");
  char range[64];
  long mark = log_mark();
  /* the first transfer is cut after half the bytes; the client resumes with Range at once */
  CHECK_OK(fetch("org/tiny", "cut.bin", NULL, &F));
  CHECK(same_as_fixture(F.path, fx));
  snprintf(range, sizeof range, "range=bytes=%ld-", fx->size / 2);
  CHECK(log_count(mark, "cdn GET", "cut.bin", "range=-", NULL) == 1);
  CHECK(log_count(mark, "cdn GET", "cut.bin", range, NULL) == 1);

  /* a partial file left by an earlier run is continued, not restarted */
  const fx_file *rx = fx_find("org/tiny", "resume.bin");
  char dir[1024], part[1200];
  repo_path(dir, sizeof dir, "models--org--tiny", "blobs");
  CHECK_OK(hub_mkdirs(dir));
  snprintf(part, sizeof part, "%s/%s.incomplete", dir, rx->sha256);
  unsigned char *head = malloc(40000);
  fx_fill(rx, 0, 40000, head);
  write_file(part, head, 40000);
  free(head);
  mark = log_mark();
  CHECK_OK(fetch("org/tiny", "resume.bin", NULL, &F));
  CHECK(same_as_fixture(F.path, rx) && !exists(part));
  CHECK(log_count(mark, "cdn GET", "resume.bin", "range=bytes=40000-", NULL) == 1);
  CHECK(log_count(mark, "cdn GET", "resume.bin", NULL) == 1);

  /* a server that ignores Range answers 200: start over, even over a garbage prefix */
  const fx_file *nx = fx_find("org/tiny", "norange.bin");
  snprintf(part, sizeof part, "%s/%s.incomplete", dir, nx->sha256);
  write_file(part, "garbage garbage garbage", 23);
  mark = log_mark();
  CHECK_OK(fetch("org/tiny", "norange.bin", NULL, &F));
  CHECK(same_as_fixture(F.path, nx));
  CHECK(log_count(mark, "cdn GET", "norange.bin", "range=bytes=23-", NULL) == 1);

  /* a server that answers a Range request from byte 0 (wrong Content-Range): start over */
  const fx_file *bx = fx_find("org/tiny", "badrange.bin");
  snprintf(part, sizeof part, "%s/%s.incomplete", dir, bx->sha256);
  unsigned char *bhead = malloc(1000);
  fx_fill(bx, 0, 1000, bhead);
  write_file(part, bhead, 1000);
  free(bhead);
  mark = log_mark();
  CHECK_OK(fetch("org/tiny", "badrange.bin", NULL, &F));
  CHECK(same_as_fixture(F.path, bx));
  CHECK(log_count(mark, "cdn GET", "badrange.bin", "range=bytes=1000-", NULL) == 1);
  CHECK(log_count(mark, "cdn GET", "badrange.bin", "range=-", NULL) == 1);

  /* a partial file longer than the blob is dropped */
  snprintf(part, sizeof part, "%s/%s.incomplete", dir,
           fx_find("org/tiny", "model.safetensors")->sha256);
  rm_rf(cache_dir);
  CHECK_OK(hub_mkdirs(dir));
  unsigned char *big = calloc(1, 250000);
  write_file(part, big, 250000);
  free(big);
  CHECK_OK(fetch("org/tiny", "model.safetensors", "refs/pr/1", &F));
  CHECK(same_as_fixture(F.path, fx_find("org/tiny", "model.safetensors")));
}

static void test_flaky_keeps_partial(void) {
  base_env();
  const fx_file *fx = fx_find("org/tiny", "flaky.bin");
  char part[1200];
  repo_path(part, sizeof part, "models--org--tiny", "blobs/");
  strcat(part, fx->sha256);
  strcat(part, ".incomplete");
  CHECK_ERR(fetch("org/tiny", "flaky.bin", NULL, &F), CHAI_ERR_NETWORK, "resumes from it");
  CHECK(strstr(chai_last_error(), ".incomplete") != NULL);
  long first = file_size(part);
  CHECK(first > 0 && first < fx->size);
  char range[64];
  snprintf(range, sizeof range, "range=bytes=%ld-", first);
  long mark = log_mark();
  CHECK_ERR(fetch("org/tiny", "flaky.bin", NULL, &F), CHAI_ERR_NETWORK, "partial file");
  CHECK(log_count(mark, "cdn GET", "flaky.bin", range, NULL) == 1); /* resumed, not restarted */
  CHECK(file_size(part) > first && file_size(part) < fx->size);
  /* the bytes kept are the right ones */
  long n;
  char *got = slurp(part, &n);
  unsigned char *want = malloc((size_t)n);
  fx_fill(fx, 0, n, want);
  CHECK(got && memcmp(got, want, (size_t)n) == 0);
  free(got);
  free(want);
}

static void test_bad_checksum(void) {
  base_env();
  const fx_file *fx = fx_find("org/tiny", "badsum.bin");
  CHECK_ERR(fetch("org/tiny", "badsum.bin", NULL, &F), CHAI_ERR_FORMAT, "checksum mismatch");
  CHECK(strstr(chai_last_error(), FX_WRONG_SHA) && strstr(chai_last_error(), fx->sha256));
  char p[1200];
  repo_path(p, sizeof p, "models--org--tiny", "blobs/" FX_WRONG_SHA);
  CHECK(!exists(p));
  strcat(p, ".incomplete");
  CHECK(!exists(p));
  repo_path(p, sizeof p, "models--org--tiny", "snapshots/" FX_C_MAIN "/badsum.bin");
  CHECK(!exists(p));
}

static void test_stall_times_out_and_resumes(void) {
  base_env();
  setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.5", 1);
  long mark = log_mark();
  double t0 = now();
  CHECK_OK(fetch("org/tiny", "stall.bin", NULL, &F));
  double dt = now() - t0;
  CHECK(dt < 2.5); /* gave up on the stalled transfer before the server's 3 s of silence */
  CHECK(same_as_fixture(F.path, fx_find("org/tiny", "stall.bin")));
  CHECK(log_count(mark, "cdn GET", "stall.bin", "range=bytes=100000-", NULL) == 1);
  unsetenv("HF_HUB_DOWNLOAD_TIMEOUT");
}

static void test_offline(void) {
  base_env();
  CHECK_OK(fetch("org/tiny", "config.json", NULL, &F));
  CHECK_OK(fetch("org/tiny", "tokenizer_config.json", NULL, &F));
  CHECK_ERR(fetch("org/tiny", "model.safetensors", NULL, &F), CHAI_ERR_NETWORK, "404");
  char online_path[CHAI_HUB_PATH_MAX];
  CHECK_OK(fetch("org/tiny", "config.json", NULL, &F));
  strcpy(online_path, F.path);
  setenv("HF_HUB_OFFLINE", "1", 1);
  long mark = log_mark();
  CHECK_OK(fetch("org/tiny", "config.json", NULL, &F));
  CHECK(strcmp(F.path, online_path) == 0 && F.cached == 1 && strcmp(F.commit, FX_C_MAIN) == 0);
  CHECK(F.etag[0] != 0 && F.size == fx_size(fx_find("org/tiny", "config.json")));
  CHECK_OK(fetch("org/tiny", "tokenizer_config.json", FX_C_MAIN, &F));
  CHECK_ERR(fetch("org/tiny", "model.safetensors", NULL, &F), CHAI_ERR_IO, "does not exist");
  CHECK(F.missing == CHAI_HUB_MISSING_FILE);
  CHECK_ERR(fetch("org/tiny", "merges.txt", NULL, &F), CHAI_ERR_IO,
            "'merges.txt' of model repo 'org/tiny' at revision 'main'");
  CHECK(strstr(chai_last_error(), "HF_HUB_OFFLINE") && F.missing == 0);
  CHECK_ERR(fetch("org/tiny", "config.json", "v9", &F), CHAI_ERR_IO,
            "model repo 'org/tiny' at revision 'v9' is not in the cache");
  CHECK_ERR(fetch("org/other", "config.json", NULL, &F), CHAI_ERR_IO, "'org/other'");
  setenv("HF_HUB_OFFLINE", "true", 1);
  CHECK_ERR(fetch("org/tiny", "vocab.json", "refs/pr/1", &F), CHAI_ERR_IO, "refs/pr/1");
  char *body = NULL;
  CHECK_ERR(chai_http_get(endpoint, NULL, &body, NULL), CHAI_ERR_NETWORK, "offline");
  CHECK(body == NULL);
  CHECK(log_count(mark, "hub", NULL) == 0 && log_count(mark, "cdn", NULL) == 0);
  /* the opts field alone also means offline */
  unsetenv("HF_HUB_OFFLINE");
  chai_hub_opts o = {.offline = 1, .quiet = 1};
  CHECK_ERR(chai_hub_fetch("org/tiny", "merges.txt", &o, &F), CHAI_ERR_IO, "merges.txt");
  CHECK_OK(chai_hub_fetch("org/tiny", "config.json", &o, &F));
  CHECK(log_count(mark, "hub", NULL) == 0);
  /* snapshot_dir comes from the cache */
  char dir[CHAI_HUB_PATH_MAX], want[CHAI_HUB_PATH_MAX];
  repo_path(want, sizeof want, "models--org--tiny", "snapshots/" FX_C_MAIN);
  CHECK_OK(chai_hub_snapshot_dir("org/tiny", NULL, dir, sizeof dir));
  CHECK(strcmp(dir, want) == 0);
  chai_hub_opts pr = {.revision = "0123456789abcdef0123456789abcdef01234567"};
  CHECK_ERR(chai_hub_snapshot_dir("org/tiny", &pr, dir, sizeof dir), CHAI_ERR_IO,
            "no snapshot folder");
  pr.revision = "v7";
  CHECK_ERR(chai_hub_snapshot_dir("org/tiny", &pr, dir, sizeof dir), CHAI_ERR_IO, "'v7'");
}

static void test_unreachable_falls_back_to_cache(void) {
  base_env();
  CHECK_OK(fetch("org/tiny", "config.json", NULL, &F));
  setenv("HF_ENDPOINT", "http://127.0.0.1:1", 1); /* nothing listens on port 1 */
  CHECK_OK(fetch("org/tiny", "config.json", NULL, &F));
  CHECK(F.cached == 1 && same_as_fixture(F.path, fx_find("org/tiny", "config.json")));
  CHECK_ERR(fetch("org/tiny", "never-fetched.txt", NULL, &F), CHAI_ERR_NETWORK, "not in the cache");
  CHECK(strstr(chai_last_error(), "127.0.0.1") && strstr(chai_last_error(), "never-fetched.txt"));
  CHECK(F.missing == 0);
  setenv("HF_ENDPOINT", "ftp://example", 1);
  CHECK_ERR(fetch("org/tiny", "config.json", NULL, &F), CHAI_ERR_ARG, "ftp://example");
}

/* Two processes fetch slow.bin (about 0.7 s to serve) at the same moment: one downloads under the
 * lock, the other waits and reuses the blob. One CDN transfer, one intact blob, no leftovers. */
static void test_two_processes_one_blob(void) {
  base_env();
  const fx_file *fx = fx_find("org/tiny", "slow.bin");
  int gate[2];
  CHECK(pipe(gate) == 0);
  long mark = log_mark();
  pid_t kids[2];
  for (int i = 0; i < 2; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      close(gate[1]);
      char c;
      (void)!read(gate[0], &c, 1); /* returns 0 when the parent closes the gate */
      chai_hub_file *f = malloc(sizeof *f);
      int ok = fetch("org/tiny", "slow.bin", NULL, f) == CHAI_OK && same_as_fixture(f->path, fx);
      if (!ok) fprintf(stderr, "child %d: %s\n", i, chai_last_error());
      _exit(ok ? 10 + f->cached : 1);
    }
  }
  close(gate[0]);
  close(gate[1]);
  int codes = 0;
  for (int i = 0; i < 2; i++) {
    int status = -1;
    waitpid(kids[i], &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) >= 10);
    codes += WIFEXITED(status) ? WEXITSTATUS(status) : 0;
  }
  CHECK(codes == 21); /* one downloaded (10), the other found the blob after the lock (11) */
  CHECK(log_count(mark, "hub HEAD", "slow.bin", NULL) == 2);
  CHECK(log_count(mark, "cdn GET", "slow.bin", NULL) == 1);
  char blob[1200];
  repo_path(blob, sizeof blob, "models--org--tiny", "blobs/");
  strcat(blob, fx->sha256);
  char hex[65];
  CHECK_OK(chai_sha256_file(blob, hex));
  CHECK(strcmp(hex, fx->sha256) == 0);
  strcat(blob, ".incomplete");
  CHECK(!exists(blob));
}

static void *interrupt_later(void *arg) {
  (void)arg;
  usleep(250000);
  chai_interrupt();
  return NULL;
}

static void test_interrupt_then_resume(void) {
  base_env();
  char other[600];
  snprintf(other, sizeof other, "%s/cache-interrupt", root);
  chai_hub_opts o = {.cache_dir = other, .quiet = 1};
  const fx_file *fx = fx_find("org/tiny", "slow.bin");
  pthread_t t;
  pthread_create(&t, NULL, interrupt_later, NULL);
  CHECK_ERR(chai_hub_fetch("org/tiny", "slow.bin", &o, &F), CHAI_ERR_INTERRUPTED, "interrupted");
  pthread_join(t, NULL);
  chai_interrupt_clear();
  char part[1200];
  snprintf(part, sizeof part, "%s/models--org--tiny/blobs/%s.incomplete", other, fx->sha256);
  long have = file_size(part);
  CHECK(have > 0 && have < fx->size);
  char range[64];
  snprintf(range, sizeof range, "range=bytes=%ld-", have);
  long mark = log_mark();
  CHECK_OK(chai_hub_fetch("org/tiny", "slow.bin", &o, &F));
  CHECK(same_as_fixture(F.path, fx));
  CHECK(strncmp(F.path, other, strlen(other)) == 0);
  CHECK(log_count(mark, "cdn GET", "slow.bin", range, NULL) == 1);
}

/* The progress bar appears when stderr is a terminal: run a download with a pty as stderr. */
static void test_progress_bar_on_a_terminal(void) {
  base_env();
  unsetenv("HF_HUB_DISABLE_PROGRESS_BARS");
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  CHECK(master >= 0);
  if (master < 0) return;
  CHECK(grantpt(master) == 0 && unlockpt(master) == 0);
  char slave_name[128];
  CHECK(ptsname_r(master, slave_name, sizeof slave_name) == 0);
  pid_t kid = fork();
  if (kid == 0) {
    int s = open(slave_name, O_RDWR | O_NOCTTY);
    if (s < 0) _exit(2);
    dup2(s, STDERR_FILENO);
    close(s);
    close(master);
    char other[600];
    snprintf(other, sizeof other, "%s/cache-progress", root);
    chai_hub_opts o = {.cache_dir = other};
    chai_hub_file *f = malloc(sizeof *f);
    _exit(chai_hub_fetch("org/tiny", "slow.bin", &o, f) == CHAI_OK ? 0 : 1);
  }
  char out[16384];
  size_t n = 0;
  for (;;) {
    ssize_t k = read(master, out + n, sizeof out - 1 - n);
    if (k <= 0) break; /* EIO once the child closed the terminal */
    n += (size_t)k;
    if (n >= sizeof out - 1) n = 0; /* keep the tail */
  }
  out[n] = 0;
  int status = -1;
  waitpid(kid, &status, 0);
  close(master);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(strchr(out, '\r') && strstr(out, "slow.bin") && strstr(out, "100%") &&
        strstr(out, "done") && strstr(out, "/s"));
  if (!strstr(out, "100%")) fprintf(stderr, "progress output: %s\n", out);
  /* ... and none when stderr is not a terminal (this process: ctest captures it) or disabled */
  char line[200];
  hub_progress_format(line, sizeof line, "org/x/model.bin", 50000000, 100000000, 1e7, 0);
  CHECK(strstr(line, "model.bin") && strstr(line, " 50%") && strstr(line, "50.0 MB") &&
        strstr(line, "100.0 MB") && strstr(line, "10.0 MB/s") && strstr(line, "ETA 0:05"));
  hub_progress_format(line, sizeof line, "x.bin", 2500, -1, 1000, 0);
  CHECK(strstr(line, "2.5 kB") && !strstr(line, "ETA") && !strstr(line, "%"));
  hub_progress_format(line, sizeof line, "x.bin", 100, 100, 0, 1);
  CHECK(strstr(line, "100%") && strstr(line, "done"));
  hub_progress_format(line, sizeof line, "x.bin", 0, 7200e6, 1e6, 0);
  CHECK(strstr(line, "ETA 2:00:00") != NULL);
}

static void test_bad_arguments(void) {
  base_env();
  long mark = log_mark();
  CHECK_ERR(fetch("a/b/c", "x", NULL, &F), CHAI_ERR_ARG, "'a/b/c'");
  CHECK_ERR(fetch("../etc", "x", NULL, &F), CHAI_ERR_ARG, "'../etc'");
  CHECK_ERR(fetch("org/a--b", "x", NULL, &F), CHAI_ERR_ARG, "'--'");
  CHECK_ERR(fetch("", "x", NULL, &F), CHAI_ERR_ARG, "empty repo id");
  CHECK_ERR(fetch(NULL, "x", NULL, &F), CHAI_ERR_ARG, "empty repo id");
  CHECK_ERR(fetch("org/tiny", "../../etc/passwd", NULL, &F), CHAI_ERR_ARG, "'../../etc/passwd'");
  CHECK_ERR(fetch("org/tiny", "/abs", NULL, &F), CHAI_ERR_ARG, "relative");
  CHECK_ERR(fetch("org/tiny", "a//b", NULL, &F), CHAI_ERR_ARG, "'a//b'");
  CHECK_ERR(fetch("org/tiny", "dir/", NULL, &F), CHAI_ERR_ARG, "'dir/'");
  CHECK_ERR(fetch("org/tiny", "", NULL, &F), CHAI_ERR_ARG, "empty filename");
  CHECK_ERR(fetch("org/tiny", NULL, NULL, &F), CHAI_ERR_ARG, "empty filename");
  CHECK_ERR(fetch("org/tiny", "a\nb", NULL, &F), CHAI_ERR_ARG, "control character");
  CHECK_ERR(fetch("org/tiny", "x", "../../main", &F), CHAI_ERR_ARG, "revision '../../main'");
  chai_hub_opts o = {.repo_type = "bogus"};
  CHECK_ERR(chai_hub_fetch("org/tiny", "x", &o, &F), CHAI_ERR_ARG, "'bogus'");
  CHECK_ERR(chai_hub_fetch("org/tiny", "x", NULL, NULL), CHAI_ERR_ARG, "output");
  CHECK(log_count(mark, "hub", NULL) == 0);
}

static void test_cache_dir_env(void) {
  base_env();
  char out[CHAI_HUB_PATH_MAX];
  CHECK_OK(chai_hub_cache_dir(NULL, out, sizeof out));
  CHECK(strcmp(out, cache_dir) == 0);
  chai_hub_opts o = {.cache_dir = "/x/y"};
  CHECK_OK(chai_hub_cache_dir(&o, out, sizeof out));
  CHECK(strcmp(out, "/x/y") == 0);
  unsetenv("HF_HUB_CACHE");
  setenv("HF_HOME", "/h", 1);
  CHECK_OK(chai_hub_cache_dir(NULL, out, sizeof out));
  CHECK(strcmp(out, "/h/hub") == 0);
  unsetenv("HF_HOME");
  setenv("XDG_CACHE_HOME", "/xdg", 1);
  CHECK_OK(chai_hub_cache_dir(NULL, out, sizeof out));
  CHECK(strcmp(out, "/xdg/huggingface/hub") == 0);
  unsetenv("XDG_CACHE_HOME");
  char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  setenv("HOME", "/home/u", 1);
  CHECK_OK(chai_hub_cache_dir(NULL, out, sizeof out));
  CHECK(strcmp(out, "/home/u/.cache/huggingface/hub") == 0);
  setenv("HF_HUB_CACHE", "~/hfc", 1);
  CHECK_OK(chai_hub_cache_dir(NULL, out, sizeof out));
  CHECK(strcmp(out, "/home/u/hfc") == 0);
  if (home)
    setenv("HOME", home, 1), free(home);
  else
    unsetenv("HOME");
  CHECK_ERR(chai_hub_cache_dir(NULL, out, 4), CHAI_ERR_ARG, "too long");
  base_env();
}

static void test_http_get(void) {
  base_env();
  setenv("HF_TOKEN", FX_TOKEN, 1);
  char url[256], *body = NULL;
  size_t len = 0;
  const char *hdrs[] = {"X-Test: hello", NULL};
  snprintf(url, sizeof url, "%s/api/echo", endpoint);
  CHECK_OK(chai_http_get(url, hdrs, &body, &len));
  CHECK(body && len == strlen(body) && strstr(body, "Bearer " FX_TOKEN) && strstr(body, "hello"));
  free(body);
  /* another origin gets no token, whether asked directly or through a redirect */
  snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", cdn_port);
  CHECK_OK(chai_http_get(url, NULL, &body, NULL));
  CHECK(body && strstr(body, "\"auth\": \"\"") && strstr(body, "cdn"));
  free(body);
  snprintf(url, sizeof url, "%s/api/redirect-cdn", endpoint);
  CHECK_OK(chai_http_get(url, NULL, &body, NULL));
  CHECK(body && strstr(body, "\"auth\": \"\"") && strstr(body, "cdn"));
  free(body);
  snprintf(url, sizeof url, "%s/api/redirect-local", endpoint);
  CHECK_OK(chai_http_get(url, NULL, &body, NULL));
  CHECK(body && strstr(body, FX_TOKEN) && strstr(body, "hub"));
  free(body);
  /* a caller's own Authorization line is sent as is */
  const char *own[] = {"Authorization: Bearer mine", NULL};
  snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", cdn_port);
  CHECK_OK(chai_http_get(url, own, &body, NULL));
  CHECK(body && strstr(body, "Bearer mine"));
  free(body);
  /* HTTP errors: get fails naming status and the JSON error; fetch hands them over */
  snprintf(url, sizeof url, "%s/api/error", endpoint);
  body = (char *)1;
  CHECK_ERR(chai_http_get(url, NULL, &body, &len), CHAI_ERR_NETWORK, "boom from the test server");
  CHECK(body == NULL && len == 0 && strstr(chai_last_error(), "500"));
  long status = 0;
  CHECK_OK(chai_http_fetch(url, NULL, &body, &len, &status));
  CHECK(status == 500 && body && strstr(body, "boom"));
  free(body);
  snprintf(url, sizeof url, "%s/nowhere", endpoint);
  CHECK_ERR(chai_http_get(url, NULL, &body, NULL), CHAI_ERR_NETWORK, "404");
  CHECK_ERR(chai_http_get("http://127.0.0.1:1/x", NULL, &body, NULL), CHAI_ERR_NETWORK,
            "127.0.0.1");
  CHECK_ERR(chai_http_get("file:///etc/passwd", NULL, &body, NULL), CHAI_ERR_ARG, "file://");
  const char *bad[] = {"X-Evil: a\r\nInjected: b", NULL};
  snprintf(url, sizeof url, "%s/api/echo", endpoint);
  CHECK_ERR(chai_http_get(url, bad, &body, NULL), CHAI_ERR_ARG, "line break");
  unsetenv("HF_TOKEN");
}

int main(void) {
  snprintf(root, sizeof root, "%s/chai_test_hub_XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(root)) return perror("mkdtemp"), 1;
  snprintf(cache_dir, sizeof cache_dir, "%s/cache", root);
  snprintf(log_path, sizeof log_path, "%s/server.log", root);
  start_server();
  double t0 = now();
#define RUN(t)                                                                                     \
  do {                                                                                             \
    double t1_ = now();                                                                            \
    t();                                                                                           \
    if (getenv("CHAI_TEST_TIMES")) fprintf(stderr, "%-40s %.2f s\n", #t, now() - t1_);             \
  } while (0)
  RUN(test_bad_arguments);
  RUN(test_cache_dir_env);
  RUN(test_text_file_layout);
  RUN(test_lfs_redirect_and_auth_drop);
  RUN(test_nested_and_quoted_names);
  RUN(test_revisions_and_404);
  RUN(test_dataset_and_renamed_repo);
  RUN(test_tokens);
  RUN(test_cut_and_resume);
  RUN(test_flaky_keeps_partial);
  RUN(test_bad_checksum);
  RUN(test_stall_times_out_and_resumes);
  RUN(test_offline);
  RUN(test_unreachable_falls_back_to_cache);
  RUN(test_two_processes_one_blob);
  RUN(test_interrupt_then_resume);
  RUN(test_progress_bar_on_a_terminal);
  RUN(test_http_get);
  stop_server();
  fprintf(stderr, "test_hub: %.1f s\n", now() - t0);
  if (chai_test_failed)
    fprintf(stderr, "keeping %s for inspection\n", root);
  else
    rm_rf(root);
  return chai_test_finish();
}
