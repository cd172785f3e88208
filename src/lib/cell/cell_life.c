/* Signal, Stop and Wait on a whole cell. A cell's subtree is one unit here,
 * as it is for free (one cgroup.kill takes it all): the calls act on the
 * executables of the cell and of every cell below it. The cells and their
 * inits stay; free removes them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cell/cgroup.h"
#include "cell/internal.h"
#include "cell/spawn.h"
#include "cleanup.h"

static bool in_subtree(const char *name, const char *top) {
  size_t l = strlen(top);
  return strncmp(name, top, l) == 0 && (name[l] == '\0' || name[l] == '/');
}

static bool exe_running(const exe *e) {
  return e->state == EXE_RUNNING || e->state == EXE_STARTING;
}

/* Running executables in the subtree of top (m->lock held). */
static size_t count_running(cell_manager *m, const char *top) {
  size_t n = 0;
  for (cell *c = m->cells; c; c = c->next)
    if (in_subtree(c->name, top))
      for (exe *e = c->exes; e; e = e->next)
        n += exe_running(e);
  return n;
}

/* Sends sig to the main process of every running executable in the
 * subtree (m->lock held). Returns how many got it. */
static size_t signal_all(cell_manager *m, const char *top, int sig) {
  size_t n = 0;
  for (cell *c = m->cells; c; c = c->next) {
    if (!in_subtree(c->name, top)) continue;
    for (exe *e = c->exes; e; e = e->next)
      if (exe_running(e) && e->pidfd >= 0 && cell_pidfd_send_signal(e->pidfd, sig) == 0) n++;
  }
  return n;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* m->lock held. Waits until nothing runs in the subtree: 0, -ETIMEDOUT,
 * -ECANCELED, or -ENOENT when the cell was freed meanwhile. */
static int wait_idle(cell_manager *m, const char *top, int64_t timeout_ms, cell_cancel_fn cancelled,
                     void *userdata) {
  int64_t end = timeout_ms < 0 ? INT64_MAX : mono_ms() + timeout_ms;
  for (;;) {
    if (!cell_find(m, top)) return -ENOENT;
    if (count_running(m, top) == 0) return 0;
    int64_t left = end - mono_ms();
    if (left <= 0) return -ETIMEDOUT;
    if (cancelled && cancelled(userdata)) return -ECANCELED;
    if (left > 100) left = 100; /* poll cancellation */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += left * 1000000;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&m->cond, &m->lock, &ts);
  }
}

/* Looks the cell up (m->lock held). */
static int find_cell(cell_manager *m, const char *name, au_error *err) {
  int r = name_validate_path("cell name", name, err);
  if (r < 0) return r;
  if (!cell_find(m, name)) return au_error_set(err, -ENOENT, "cell %s not found", name);
  return 0;
}

int cell_signal(cell_manager *m, const char *name, int sig, cell_info *ret, au_error *err) {
  if (sig <= 0 || sig >= 65)
    return au_error_set(err, -EINVAL, "signal: %d is not a signal number", sig);
  pthread_mutex_lock(&m->lock);
  int r = find_cell(m, name, err);
  size_t n = r < 0 ? 0 : signal_all(m, name, sig);
  pthread_mutex_unlock(&m->lock);
  if (r < 0) return r;
  /* Like a single executable that is not running: the caller must see it
   * (FAILED_PRECONDITION). */
  if (n == 0)
    return au_error_set(err, -EBUSY, "cell %s: no executable is running in it or below it", name);
  return cell_inspect(m, name, ret, err);
}

/* Leaf cgroups of every executable in the subtree, NULL-terminated
 * (m->lock held). */
static char **exe_leaves(cell_manager *m, const char *top) {
  size_t n = 0;
  for (cell *c = m->cells; c; c = c->next)
    if (in_subtree(c->name, top))
      for (exe *e = c->exes; e; e = e->next)
        n++;
  char **leaves = calloc(n + 1, sizeof(char *));
  size_t k = 0;
  for (cell *c = m->cells; c && leaves; c = c->next)
    if (in_subtree(c->name, top))
      for (exe *e = c->exes; e; e = e->next)
        if ((leaves[k] = strdup(e->leaf))) k++;
  return leaves;
}

int cell_stop(cell_manager *m, const char *name, uint32_t grace_ms, cell_cancel_fn cancelled,
              void *userdata, cell_info *ret, au_error *err) {
  if (grace_ms == 0) grace_ms = 10000;
  pthread_mutex_lock(&m->lock);
  int r = find_cell(m, name, err);
  if (r < 0) {
    pthread_mutex_unlock(&m->lock);
    return r;
  }
  signal_all(m, name, SIGTERM);
  r = wait_idle(m, name, grace_ms, cancelled, userdata);
  if (r == -ECANCELED) {
    pthread_mutex_unlock(&m->lock);
    return au_error_set(err, r, "stop cell %s: cancelled during the grace period", name);
  }
  /* After the grace period, or once every main process has ended, each
   * executable's leaf is killed: that takes what they forked too, and
   * leaves the cell's init (in _init) alone. */
  char **leaves = r == -ENOENT ? NULL : exe_leaves(m, name);
  pthread_mutex_unlock(&m->lock);
  if (r == -ENOENT) return au_error_set(err, r, "cell %s was freed while stopping", name);
  if (!leaves) return au_error_set(err, -ENOMEM, "out of memory");
  for (char **l = leaves; *l; l++) {
    cgroup_kill_wait(*l, 5000, NULL);
    free(*l);
  }
  free(leaves);
  pthread_mutex_lock(&m->lock);
  r = wait_idle(m, name, 5000, NULL, NULL); /* the inits report the exits */
  pthread_mutex_unlock(&m->lock);
  if (r < 0) return au_error_set(err, r, "stop cell %s: %s", name, strerror(-r));
  return cell_inspect(m, name, ret, err);
}

int cell_wait(cell_manager *m, const char *name, int64_t timeout_ms, cell_cancel_fn cancelled,
              void *userdata, cell_info *ret, au_error *err) {
  pthread_mutex_lock(&m->lock);
  int r = find_cell(m, name, err);
  if (r < 0) {
    pthread_mutex_unlock(&m->lock);
    return r;
  }
  r = wait_idle(m, name, timeout_ms, cancelled, userdata);
  pthread_mutex_unlock(&m->lock);
  if (r == -ETIMEDOUT) return au_error_set(err, r, "cell %s: executables are still running", name);
  if (r == -ECANCELED) return au_error_set(err, r, "wait cancelled");
  if (r < 0) return au_error_set(err, r, "cell %s was freed", name);
  return cell_inspect(m, name, ret, err);
}
