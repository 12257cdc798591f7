/* Child processes (engine/include/chai/proc.h): fork + exec, so the child can set its parent-death
 * signal before it runs anything (posix_spawn cannot), and stop signals that only count. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chai/proc.h"

struct chai_proc {
  pid_t pid;
  int group;
  int ended;
  chai_proc_exit how;
};

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child_exec(const char *path, char *const argv[], const chai_proc_opts *o, int log_fd,
                       pid_t parent) {
  if (o->new_group) setpgid(0, 0);
  if (o->parent_death_signal) {
    prctl(PR_SET_PDEATHSIG, o->parent_death_signal);
    if (getppid() != parent) _exit(127); /* the parent died before prctl took effect */
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  int in = open("/dev/null", O_RDONLY);
  if (in >= 0 && in != 0) {
    dup2(in, 0);
    close(in);
  }
  if (log_fd >= 0) {
    dup2(log_fd, 1);
    dup2(log_fd, 2);
  }
  if (close_range(3, ~0U, 0) != 0) { /* kernels before 5.9 */
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 ? max : 1024); fd++)
      close((int)fd);
  }
  if (o->cwd && chdir(o->cwd) != 0) {
    static const char msg[] = "chai: cannot enter the working folder of the job\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  execv(path, argv);
  static const char msg[] = "chai: cannot execute the job's program\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(127);
}

chai_status chai_proc_spawn(const char *path, char *const argv[], const chai_proc_opts *opts,
                            chai_proc **out) {
  *out = NULL;
  chai_proc_opts none = {0};
  const chai_proc_opts *o = opts ? opts : &none;
  if (!path || !argv || !argv[0]) return chai_error(CHAI_ERR_ARG, "proc: no program given");
  chai_proc *p = calloc(1, sizeof *p);
  if (!p) return chai_error(CHAI_ERR_NOMEM, "proc: out of memory");
  int log_fd = -1;
  if (o->log_path) {
    log_fd = open(o->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      free(p);
      return chai_error(CHAI_ERR_IO, "proc: cannot open log '%s': %s", o->log_path,
                        strerror(errno));
    }
  }
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) child_exec(path, argv, o, log_fd, parent);
  int err = errno;
  if (log_fd >= 0) close(log_fd);
  if (pid < 0) {
    free(p);
    return chai_error(CHAI_ERR_IO, "proc: cannot start '%s': %s", path, strerror(err));
  }
  if (o->new_group) setpgid(pid, pid); /* also in the parent, so a signal right away reaches it */
  p->pid = pid;
  p->group = o->new_group != 0;
  *out = p;
  return CHAI_OK;
}

int chai_proc_pid(const chai_proc *p) {
  return (int)p->pid;
}

static void record(chai_proc *p, int status) {
  p->ended = 1;
  p->how.exited = WIFEXITED(status);
  p->how.code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
  p->how.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

int chai_proc_poll(chai_proc *p, chai_proc_exit *how) {
  if (!p->ended) {
    int status;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid)
      record(p, status);
    else if (r < 0 && errno == ECHILD) /* reaped elsewhere: nothing more can be known */
      p->ended = 1, p->how.exited = 0, p->how.signal = 0;
  }
  if (p->ended && how) *how = p->how;
  return p->ended;
}

int chai_proc_wait(chai_proc *p, int timeout_ms, chai_proc_exit *how) {
  struct timespec step = {0, 10 * 1000 * 1000};
  for (long waited = 0; !chai_proc_poll(p, how); waited += 10) {
    if (timeout_ms >= 0 && waited >= timeout_ms) return 0;
    nanosleep(&step, NULL);
  }
  return 1;
}

chai_status chai_proc_signal(chai_proc *p, int sig) {
  if (chai_proc_poll(p, NULL)) return chai_error(CHAI_ERR_STATE, "proc: %d has ended", p->pid);
  if (kill(p->group ? -p->pid : p->pid, sig) != 0)
    return chai_error(CHAI_ERR_IO, "proc: cannot signal %d: %s", p->pid, strerror(errno));
  return CHAI_OK;
}

void chai_proc_free(chai_proc *p) {
  if (p) chai_proc_poll(p, NULL);
  free(p);
}

int chai_proc_alive(int pid, const char *needle) {
  if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) return 0;
  if (!needle) return 1;
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  for (size_t i = 0; i < n; i++)
    if (buf[i] == '\0') buf[i] = ' ';
  buf[n] = '\0';
  return strstr(buf, needle) != NULL;
}

/* ---- stop signals ---- */

static volatile sig_atomic_t stop_count, stop_last;

static void on_stop(int sig) {
  stop_count++;
  stop_last = sig;
}

chai_status chai_stop_signals_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: a blocking poll returns EINTR */
  if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
    return chai_error(CHAI_ERR_IO, "cannot install the stop signal handlers: %s", strerror(errno));
  return CHAI_OK;
}

int chai_stop_signal_count(void) {
  return stop_count;
}
int chai_stop_signal_last(void) {
  return stop_last;
}
