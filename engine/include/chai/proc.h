/* chai — child processes and stop signals, for `chai serve` (each job is a child process, so a
 * crash in a job ends that job, not the server) and for long runs that stop cleanly on SIGTERM. */
#ifndef CHAI_PROC_H
#define CHAI_PROC_H

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chai_proc chai_proc;

typedef struct chai_proc_opts {
  const char
      *log_path;   /* stdout and stderr appended to this file (created 0644); NULL: inherited */
  const char *cwd; /* the child's working folder; NULL: the caller's */
  int new_group;   /* the child leads a new process group, and signals go to that group */
  int parent_death_signal; /* sent to the child if the caller dies first (Linux); 0: none */
} chai_proc_opts;

/* How a process ended. */
typedef struct chai_proc_exit {
  int exited; /* 1: exit(code); 0: killed by `signal` */
  int code;   /* the exit status when exited */
  int signal; /* the signal number when killed */
} chai_proc_exit;

/* Starts `path` with `argv` (NULL-terminated; argv[0] is the name the child sees), stdin from
 * /dev/null, every descriptor above 2 closed. Returns the new process in *out. Fails with
 * CHAI_ERR_IO when the log cannot be opened or the process cannot be created; a program that
 * cannot be executed makes the child exit with status 127 (its log says why). */
chai_status chai_proc_spawn(const char *path, char *const argv[], const chai_proc_opts *opts,
                            chai_proc **out);

int chai_proc_pid(const chai_proc *p);

/* Without waiting: returns 1 and fills *how when the process has ended (it is reaped then), 0
 * while it runs. Later calls after an end return 1 with the same *how. */
int chai_proc_poll(chai_proc *p, chai_proc_exit *how);

/* Waits up to timeout_ms (negative: forever) for the end. Returns 1 (ended, *how filled) or 0. */
int chai_proc_wait(chai_proc *p, int timeout_ms, chai_proc_exit *how);

/* Sends `sig` to the process (to its group when it leads one). Fails with CHAI_ERR_STATE once it
 * has ended. */
chai_status chai_proc_signal(chai_proc *p, int sig);

/* Frees the handle. A process still running is left running (not killed) and reaped by nobody
 * until the caller exits; NULL is fine. */
void chai_proc_free(chai_proc *p);

/* 1 when a process with this pid is alive and its command line contains `needle` (NULL: any
 * command line), 0 otherwise. For a server restarted while an old child may still be stopping. */
int chai_proc_alive(int pid, const char *needle);

/* ---- stop signals ---- */

/* Installs handlers for SIGTERM and SIGINT that only count the signal (interrupted system calls
 * are not restarted, so a waiting poll() returns early). Installing again is harmless. Fails with
 * CHAI_ERR_IO when sigaction does. */
chai_status chai_stop_signals_install(void);
/* How many SIGTERM/SIGINT arrived since install, and the last one's number (0 when none). */
int chai_stop_signal_count(void);
int chai_stop_signal_last(void);

#ifdef __cplusplus
}
#endif
#endif
