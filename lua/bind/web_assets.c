/* The web page's files, embedded with the assembler's .incbin at build time (lua/CMakeLists.txt
 * passes the folders and makes this file depend on them, so editing the page rebuilds it). */
#include <string.h>

#include "web_assets.h"

#ifndef CHAI_WEB_DIR
#error "CHAI_WEB_DIR (lua/web) and CHAI_CHARTJS_FILE must be defined by lua/CMakeLists.txt"
#endif

/* sym[] holds the file's bytes followed by one NUL; sym_end points at that NUL. */
#define INCBIN(sym, file)                                                                          \
  __asm__(".section .rodata\n.balign 16\n.globl " #sym "\n.hidden " #sym "\n" #sym ":\n"           \
          ".incbin \"" file "\"\n.globl " #sym "_end\n.hidden " #sym "_end\n" #sym "_end:\n"       \
          ".byte 0\n.previous\n");                                                                 \
  extern const char sym[], sym##_end[]

INCBIN(chai_web_index_html, CHAI_WEB_DIR "/index.html");
INCBIN(chai_web_app_js, CHAI_WEB_DIR "/app.js");
INCBIN(chai_web_style_css, CHAI_WEB_DIR "/style.css");
INCBIN(chai_web_chart_js, CHAI_CHARTJS_FILE);

#define ASSET(name, mime, sym)                                                                     \
  { name, mime, sym, sym##_end }

const chai_web_asset chai_web_assets[] = {
    ASSET("index.html", "text/html; charset=utf-8", chai_web_index_html),
    ASSET("app.js", "text/javascript; charset=utf-8", chai_web_app_js),
    ASSET("style.css", "text/css; charset=utf-8", chai_web_style_css),
    ASSET("chart.min.js", "text/javascript; charset=utf-8", chai_web_chart_js),
    {NULL, NULL, NULL, 0},
};

const chai_web_asset *chai_web_asset_find(const char *name) {
  for (const chai_web_asset *a = chai_web_assets; a->name; a++)
    if (!strcmp(a->name, name)) return a;
  return NULL;
}
