/* The files of the web page of `chai serve` (lua/web/ and Debian's Chart.js), compiled into the
 * binary by web_assets.c, so the page needs no files at run time and no network. */
#ifndef CHAI_WEB_ASSETS_H
#define CHAI_WEB_ASSETS_H

#include <stddef.h>

typedef struct chai_web_asset {
  const char *name; /* "index.html", "app.js", ... */
  const char *mime; /* the Content-Type to send */
  const char *data; /* the bytes are data[0, end - data), followed by a NUL */
  const char *end;
} chai_web_asset;

/* The assets, ended by an entry whose name is NULL. */
extern const chai_web_asset chai_web_assets[];

/* The asset called `name`, or NULL. */
const chai_web_asset *chai_web_asset_find(const char *name);

#endif
