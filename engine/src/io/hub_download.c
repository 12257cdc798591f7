/* The blob download: a GET that follows the redirect to the CDN, written to a partial file,
 * resumed with Range (restarted when the server cannot continue), hashed as the bytes arrive, with
 * stall detection, Ctrl-C, retries while it makes progress, and the progress bar. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chai/chai.h"
#include "hub_internal.h"

/* ---------------------------------------------------------------- progress bar */

static void human(char *out, size_t cap, double b) {
  static const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4)
    b /= 1000, u++;
  if (u == 0)
    snprintf(out, cap, "%.0f %s", b, unit[u]);
  else
    snprintf(out, cap, "%.1f %s", b, unit[u]);
}

static void clock_text(char *out, size_t cap, double s) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

void hub_progress_format(char *buf, size_t cap, const char *label, long long done, long long total,
                         double rate, int finished) {
  char d[32], t[32], r[32], eta[32] = "";
  const char *base = strrchr(label, '/');
  base = base ? base + 1 : label;
  human(d, sizeof d, (double)done);
  human(r, sizeof r, rate);
  if (total > 0) {
    human(t, sizeof t, (double)total);
    double pct = 100.0 * (double)done / (double)total;
    if (finished)
      snprintf(eta, sizeof eta, "done");
    else if (rate > 0) {
      char c[24];
      clock_text(c, sizeof c, (double)(total - done) / rate);
      snprintf(eta, sizeof eta, "ETA %s", c);
    } else
      snprintf(eta, sizeof eta, "ETA --:--");
    snprintf(buf, cap, "%-24.24s %3.0f%% %9s / %-9s %9s/s  %s", base, pct > 100 ? 100 : pct, d, t,
             r, eta);
  } else {
    snprintf(buf, cap, "%-24.24s %9s  %9s/s%s", base, d, r, finished ? "  done" : "");
  }
}

/* ---------------------------------------------------------------- resumable GET */

typedef struct dl {
  int fd;
  long long have;   /* bytes in the partial file */
  long long expect; /* announced size or -1 */
  int hashing;
  chai_sha256 sha;
  CURL *c;
  hub_resp *r;
  int started;
  long code;
  chai_status failed; /* our callback aborted the transfer with this status; message set */
  char body[1024];    /* the start of an error reply */
  size_t body_len;
  long long got; /* bytes received in this call, over all attempts */
  /* progress */
  int progress, drawn;
  const char *label;
  double t0, last_draw;
  /* stall detection: libcurl's low-speed check averages over seconds, so after a burst it takes
   * far longer than the timeout to notice silence; we time the gap since the last byte instead */
  double last_data;
  long stall_ms;
  int stalled;
  int bad_range; /* a 206 that does not start where the file ends */
} dl;

static void draw(dl *d, int finished) {
  double t = hub_now();
  if (!finished && t - d->last_draw < 0.1) return;
  d->last_draw = t;
  double rate = t > d->t0 ? (double)d->got / (t - d->t0) : 0;
  char line[200];
  hub_progress_format(line, sizeof line, d->label, d->have, d->expect, rate, finished);
  fprintf(stderr, "\r%s", line);
  if (finished) fputc('\n', stderr);
  fflush(stderr);
  d->drawn = 1;
}

static chai_status restart(dl *d) {
  if (ftruncate(d->fd, 0) != 0 || lseek(d->fd, 0, SEEK_SET) != 0)
    return chai_error(CHAI_ERR_IO, "cannot truncate the partial download: %s", strerror(errno));
  d->have = 0;
  chai_sha256_init(&d->sha);
  return CHAI_OK;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  dl *d = ud;
  size_t n = size * nmemb;
  if (!d->started) {
    d->started = 1;
    curl_easy_getinfo(d->c, CURLINFO_RESPONSE_CODE, &d->code);
    if (d->code == 206) {
      long long a = -1;
      if (sscanf(d->r->range, "bytes %lld-", &a) != 1 || a != d->have) {
        d->bad_range = 1; /* not the continuation we asked for: the caller starts over */
        snprintf(d->body, sizeof d->body, "%.200s", d->r->range);
        return 0;
      }
    } else if (d->code == 200 && d->have > 0) {
      /* the server ignored Range: start over */
      if ((d->failed = restart(d))) return 0;
    }
  }
  if (d->code != 200 && d->code != 206) {
    size_t take = n < sizeof d->body - 1 - d->body_len ? n : sizeof d->body - 1 - d->body_len;
    memcpy(d->body + d->body_len, ptr, take);
    d->body_len += take;
    d->body[d->body_len] = 0;
    return n;
  }
  for (size_t off = 0; off < n;) {
    ssize_t w = write(d->fd, ptr + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      d->failed = chai_error(CHAI_ERR_IO, "cannot write the download: %s", strerror(errno));
      return 0;
    }
    off += (size_t)w;
  }
  if (d->hashing) chai_sha256_update(&d->sha, ptr, n);
  d->last_data = hub_now();
  d->have += (long long)n;
  d->got += (long long)n;
  return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  dl *d = ud;
  if (chai_interrupted()) return 1;
  if ((hub_now() - d->last_data) * 1000 > d->stall_ms) {
    d->stalled = 1;
    return 1;
  }
  if (d->progress && d->started && (d->code == 200 || d->code == 206)) draw(d, 0);
  return 0;
}

/* Hashes the first d->have bytes already in the file. */
static chai_status hash_prefix(dl *d) {
  unsigned char buf[1 << 16];
  long long off = 0;
  while (off < d->have) {
    size_t want = d->have - off < (long long)sizeof buf ? (size_t)(d->have - off) : sizeof buf;
    ssize_t n = pread(d->fd, buf, want, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return chai_error(CHAI_ERR_IO, "cannot read the partial download: %s",
                        n < 0 ? strerror(errno) : "short file");
    chai_sha256_update(&d->sha, buf, (size_t)n);
    off += n;
  }
  return CHAI_OK;
}

/* One GET from d->have on. Returns the curl result; d->code is the final status. */
static CURLcode transfer(const hub_env *e, const char *url, dl *d, char *errbuf) {
  hub_resp r;
  hub_resp_reset(&r);
  struct curl_slist *hdrs = NULL;
  CURL *c = hub_curl_new(e, url, &hdrs, e->token, &r);
  if (!c) return CURLE_OUT_OF_MEMORY;
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  /* follows the 302 to the CDN; libcurl drops the Authorization header set here when the redirect
   * goes to another host or port (CURLOPT_UNRESTRICTED_AUTH stays off) */
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  char range[48];
  if (d->have > 0) {
    snprintf(range, sizeof range, "%lld-", d->have);
    curl_easy_setopt(c, CURLOPT_RANGE, range);
  }
  d->c = c;
  d->r = &r;
  d->started = 0;
  d->code = 0;
  d->stalled = 0;
  d->bad_range = 0;
  d->stall_ms = e->download_timeout_ms;
  d->last_data = hub_now();
  d->body_len = 0;
  d->body[0] = 0;
  errbuf[0] = 0;
  CURLcode res = curl_easy_perform(c);
  if (!d->started) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d->code);
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  d->c = NULL;
  d->r = NULL;
  return res;
}

chai_status hub_http_download(const hub_env *e, const char *url, const char *part, long long expect,
                              const char *label, char *sha_hex, long long *bytes) {
  chai_status st = hub_curl_ready();
  if (st) return st;
  dl d;
  memset(&d, 0, sizeof d);
  d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (d.fd < 0) return chai_error(CHAI_ERR_IO, "cannot open '%s': %s", part, strerror(errno));
  struct stat sb;
  if (fstat(d.fd, &sb) != 0) {
    st = chai_error(CHAI_ERR_IO, "cannot stat '%s': %s", part, strerror(errno));
    goto done;
  }
  d.have = sb.st_size;
  d.expect = expect;
  d.hashing = sha_hex != NULL;
  d.progress = e->progress;
  d.label = label;
  d.t0 = hub_now();
  chai_sha256_init(&d.sha);
  if (expect >= 0 && d.have > expect && (st = restart(&d))) goto done;
  if (lseek(d.fd, 0, SEEK_END) < 0) {
    st = chai_error(CHAI_ERR_IO, "cannot seek '%s': %s", part, strerror(errno));
    goto done;
  }
  if (d.hashing && (st = hash_prefix(&d))) goto done;

  int restarted = 0;
  for (int attempt = 0;; attempt++) {
    if (expect >= 0 && d.have == expect) break; /* an earlier run got every byte */
    long long before = d.got;
    char errbuf[CURL_ERROR_SIZE];
    d.failed = CHAI_OK;
    CURLcode res = transfer(e, url, &d, errbuf);
    if (d.failed) {
      st = d.failed;
      goto done;
    }
    if (d.bad_range && !restarted) {
      restarted = 1;
      if ((st = restart(&d))) goto done;
      continue;
    }
    if (d.bad_range) {
      st = chai_error(CHAI_ERR_NETWORK,
                      "%s: the server does not resume where asked (Content-Range '%s' for byte "
                      "%lld)",
                      url, d.body, d.have);
      goto done;
    }
    if (res == CURLE_ABORTED_BY_CALLBACK && d.stalled) {
      res = CURLE_OPERATION_TIMEDOUT;
      snprintf(errbuf, sizeof errbuf, "no data for %.1f s (HF_HUB_DOWNLOAD_TIMEOUT)",
               e->download_timeout_ms / 1000.0);
    } else if (res == CURLE_ABORTED_BY_CALLBACK && chai_interrupted()) {
      st = chai_error(CHAI_ERR_INTERRUPTED,
                      "download of %s interrupted after %lld bytes; '%s' is kept and the next "
                      "download resumes from it",
                      label, d.have, part);
      goto done;
    }
    if (res == CURLE_OUT_OF_MEMORY) {
      st = chai_error(CHAI_ERR_NOMEM, "out of memory setting up a download");
      goto done;
    }
    if (res != CURLE_OK) {
      /* a cut or stalled transfer: resume at once while it keeps making progress */
      if (d.got > before && attempt < 4) {
        struct timespec ts = {0, 20000000L << attempt};
        nanosleep(&ts, NULL);
        continue;
      }
      char have[32], want[32] = "?";
      snprintf(have, sizeof have, "%lld", d.have);
      if (expect >= 0) snprintf(want, sizeof want, "%lld", expect);
      st = chai_error(CHAI_ERR_NETWORK,
                      "downloading %s from %s failed after %s of %s bytes: %s; the partial file "
                      "'%s' is kept and the next download resumes from it",
                      label, url, have, want, *errbuf ? errbuf : curl_easy_strerror(res), part);
      goto done;
    }
    if (d.code == 416 && d.have > 0 && !restarted) {
      /* our partial file is not a prefix the server can continue: start over */
      restarted = 1;
      if ((st = restart(&d))) goto done;
      continue;
    }
    if (d.code != 200 && d.code != 206) {
      st = hub_http_status_error(d.code, url, label, *e->token != 0, d.body);
      goto done;
    }
    if (d.code == 200 && !d.started && d.have > 0 && (st = restart(&d))) goto done;
    break;
  }
  if (expect >= 0 && d.have != expect) {
    unlink(part);
    st = chai_error(CHAI_ERR_FORMAT,
                    "size mismatch for %s: the Hub announced %lld bytes, the download has %lld; "
                    "the download was deleted",
                    label, expect, d.have);
    goto done;
  }
  if (d.progress) draw(&d, 1);
  if (d.hashing) chai_sha256_final_hex(&d.sha, sha_hex);
  if (bytes) *bytes = d.have;
  st = CHAI_OK;
done:
  if (st && d.drawn) fputc('\n', stderr);
  if (fsync(d.fd) != 0 && st == CHAI_OK)
    st = chai_error(CHAI_ERR_IO, "cannot flush '%s': %s", part, strerror(errno));
  close(d.fd);
  return st;
}
