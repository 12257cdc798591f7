/* Saving an OPT model in the Hugging Face layout: config.json + model.safetensors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "chai/checkpoint.h"
#include "chai/opt.h"
#include "model/opt_model.h"

/* mkdir -p */
static chai_status make_dirs(const char *dir) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
    return chai_error(CHAI_ERR_ARG, "OPT save: path too long: %s", dir);
  for (char *p = path + 1;; p++) {
    bool end = *p == 0;
    if (*p == '/' || end) {
      *p = 0;
      if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return chai_error(CHAI_ERR_IO, "OPT save: cannot create %s: %s", path, strerror(errno));
      if (end) break;
      *p = '/';
    }
  }
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return chai_error(CHAI_ERR_IO, "OPT save: %s is not a folder", dir);
  return CHAI_OK;
}

static chai_status write_text(const char *path, const char *text) {
  char tmp[4300];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return chai_error(CHAI_ERR_ARG, "OPT save: path too long: %s", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return chai_error(CHAI_ERR_IO, "OPT save: cannot write %s: %s", tmp, strerror(errno));
  size_t n = strlen(text);
  bool ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    return chai_error(CHAI_ERR_IO, "OPT save: cannot write %s: %s", path, strerror(e));
  }
  return CHAI_OK;
}

chai_status chai_opt_save(const chai_opt_model *m, const char *dir) {
  chai_status st = make_dirs(dir);
  if (st) return st;
  char path[4200];
  char *json = NULL;
  if ((st = opt_qio_config_json(m, &json))) return st;
  snprintf(path, sizeof path, "%s/config.json", dir);
  st = write_text(path, json);
  free(json);
  if (st) return st;
  opt_qio_list l;
  if ((st = opt_qio_tensors(m, &l))) return st;
  const char **meta = malloc((size_t)(l.n_meta + 3) * sizeof *meta);
  if (!meta) {
    opt_qio_list_free(&l);
    return chai_error(CHAI_ERR_NOMEM, "OPT save: out of memory");
  }
  meta[0] = "format";
  meta[1] = "pt";
  for (int i = 0; i < l.n_meta; i++)
    meta[2 + i] = l.meta[i];
  meta[2 + l.n_meta] = NULL;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  st = chai_safetensors_save(path, l.n, (const char *const *)l.names, l.ts, meta);
  free(meta);
  opt_qio_list_free(&l);
  return st;
}
