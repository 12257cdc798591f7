/* chai.core.signals: stopping a long run cleanly on SIGINT, SIGTERM or a time limit.
 *   signals.catch()          SIGINT and SIGTERM (and SIGALRM) are recorded and call
 * chai_interrupt(), so the engine's long loops stop at their next check; the previous handlers are
 * kept. A second SIGINT/SIGTERM gets the default action (kills a program stuck where nothing
 * polls). signals.pending()        "SIGINT" | "SIGTERM" | "SIGALRM" | nil: the first signal since
 * catch() signals.alarm(seconds)   SIGALRM after `seconds` (whole seconds, rounded up; 0 cancels)
 *   signals.release()        the previous handlers back, the record and the interrupt cleared
 * The search uses them (lua/chai/search.lua): Ctrl-C, `kill` or --budget abandon the running
 * configuration and end the run with everything finished kept. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "bind.h"
#include "chai/error.h"

static volatile sig_atomic_t caught; /* the first signal number, 0 = none */
static int installed;
static struct sigaction before_int, before_term, before_alrm;

static void on_signal(int sig) {
  if (!caught) caught = sig;
  if (sig != SIGALRM) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
  }
  chai_interrupt();
}

static int signals_catch(lua_State *L) {
  if (!installed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &before_int);
    sigaction(SIGTERM, &sa, &before_term);
    sigaction(SIGALRM, &sa, &before_alrm);
    installed = 1;
    caught = 0;
  }
  (void)L;
  return 0;
}

static int signals_pending(lua_State *L) {
  int sig = caught;
  if (sig == SIGINT)
    lua_pushliteral(L, "SIGINT");
  else if (sig == SIGTERM)
    lua_pushliteral(L, "SIGTERM");
  else if (sig == SIGALRM)
    lua_pushliteral(L, "SIGALRM");
  else
    lua_pushnil(L);
  return 1;
}

static int signals_alarm(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (!(s >= 0) || s > 1e7)
    return luaL_error(L, "signals.alarm: seconds must be in 0..1e7, got %f", s);
  if (!installed) return luaL_error(L, "signals.alarm: call signals.catch() first");
  unsigned whole = (unsigned)s;
  if ((lua_Number)whole < s) whole++;
  alarm(whole);
  return 0;
}

static int signals_release(lua_State *L) {
  (void)L;
  if (installed) {
    alarm(0);
    sigaction(SIGINT, &before_int, NULL);
    sigaction(SIGTERM, &before_term, NULL);
    sigaction(SIGALRM, &before_alrm, NULL);
    installed = 0;
  }
  caught = 0;
  chai_interrupt_clear();
  return 0;
}

void chai_bind_open_signals(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"catch", signals_catch},
                                 {"pending", signals_pending},
                                 {"alarm", signals_alarm},
                                 {"release", signals_release},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, table, "signals");
}
