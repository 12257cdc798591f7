/* chai_file_append / chai_file_replace: records land whole, a failing write (the testing hook's
 * full disk, a short write included) leaves the file exactly as it was, and errors name the path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chai/file.h"
#include "check.h"

static char dir[] = "/tmp/chai_file_XXXXXX";

/* The whole content of a file ("" when it is missing), in a static buffer. */
static const char *slurp(const char *path) {
  static char buf[4096];
  buf[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f) return buf;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void test_append(void) {
  char path[256];
  snprintf(path, sizeof path, "%s/results.jsonl", dir);
  CHECK_OK(chai_file_append(path, "{\"a\":1}\n", 8));
  CHECK_OK(chai_file_append(path, "{\"b\":2}\n", 8));
  CHECK(strcmp(slurp(path), "{\"a\":1}\n{\"b\":2}\n") == 0);
  CHECK_OK(chai_file_append(path, "", 0));
  CHECK(strcmp(slurp(path), "{\"a\":1}\n{\"b\":2}\n") == 0);

  /* A full disk in the middle of a record: 3 bytes go out, then ENOSPC; the file is cut back. */
  chai_file_fail_after(3);
  CHECK_ERR(chai_file_append(path, "{\"c\":3}\n", 8), CHAI_ERR_IO, "No space left on device");
  CHECK(strstr(chai_last_error(), path) != NULL);
  CHECK(strstr(chai_last_error(), "keeps its 16 bytes") != NULL);
  CHECK(strcmp(slurp(path), "{\"a\":1}\n{\"b\":2}\n") == 0);
  /* Nothing at all fits: the same. */
  chai_file_fail_after(0);
  CHECK_ERR(chai_file_append(path, "{\"c\":3}\n", 8), CHAI_ERR_IO, "No space left on device");
  CHECK(strcmp(slurp(path), "{\"a\":1}\n{\"b\":2}\n") == 0);
  /* Exactly enough room. */
  chai_file_fail_after(8);
  CHECK_OK(chai_file_append(path, "{\"c\":3}\n", 8));
  chai_file_fail_after(-1);
  CHECK(strcmp(slurp(path), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n") == 0);

  char missing[300];
  snprintf(missing, sizeof missing, "%s/no/such/folder/results.jsonl", dir);
  CHECK_ERR(chai_file_append(missing, "x", 1), CHAI_ERR_IO, missing);
  CHECK_ERR(chai_file_append(NULL, "x", 1), CHAI_ERR_ARG, "NULL");
  unlink(path);
}

static void test_replace(void) {
  char path[256], tmp[300];
  snprintf(path, sizeof path, "%s/meta.json", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  CHECK_OK(chai_file_replace(path, "{\"v\":1}", 7));
  CHECK(strcmp(slurp(path), "{\"v\":1}") == 0);
  CHECK_OK(chai_file_replace(path, "{\"v\":22}", 8));
  CHECK(strcmp(slurp(path), "{\"v\":22}") == 0);
  chai_file_fail_after(4);
  CHECK_ERR(chai_file_replace(path, "{\"v\":333}", 9), CHAI_ERR_IO, "is unchanged");
  chai_file_fail_after(-1);
  CHECK(strcmp(slurp(path), "{\"v\":22}") == 0);
  CHECK(!exists(tmp));
  char missing[300];
  snprintf(missing, sizeof missing, "%s/no/such/meta.json", dir);
  CHECK_ERR(chai_file_replace(missing, "x", 1), CHAI_ERR_IO, "no/such/meta.json.tmp");
  unlink(path);
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_append();
  test_replace();
  rmdir(dir);
  return chai_test_finish();
}
