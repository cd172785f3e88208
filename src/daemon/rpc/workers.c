/* Worker pool for handlers. Handlers may block for a long time (Wait, log
 * follow, VM boot), so the pool grows on demand up to max_threads instead
 * of queueing behind a busy fixed set; idle threads above min exit. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "rpc_internal.h"

#define IDLE_EXIT_SECONDS 30

typedef struct job {
  struct job *next;
  void (*fn)(void *);
  void *arg;
} job;

struct rpc_workers {
  pthread_mutex_t lock;
  pthread_cond_t work;    /* a job was queued or stopping */
  pthread_cond_t drained; /* threads == 0 */
  job *head, *tail;
  unsigned queued; /* jobs not yet taken by a thread */
  unsigned threads, idle, min_threads, max_threads;
  bool stopping;
};

static void *worker_main(void *arg) {
  rpc_workers *pool = arg;
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    while (!pool->head && !pool->stopping) {
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += IDLE_EXIT_SECONDS;
      pool->idle++;
      int r = pthread_cond_timedwait(&pool->work, &pool->lock, &until);
      pool->idle--;
      if (r == ETIMEDOUT && !pool->head && pool->threads > pool->min_threads) goto out;
    }
    if (!pool->head) break; /* stopping and drained */
    job *j = pool->head;
    pool->head = j->next;
    if (!pool->head) pool->tail = NULL;
    pool->queued--;
    pthread_mutex_unlock(&pool->lock);
    j->fn(j->arg);
    free(j);
    pthread_mutex_lock(&pool->lock);
  }
out:
  pool->threads--;
  if (pool->threads == 0) pthread_cond_broadcast(&pool->drained);
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

/* Called with the lock held. */
static int spawn_thread(rpc_workers *pool) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int r = pthread_create(&t, &attr, worker_main, pool);
  pthread_attr_destroy(&attr);
  if (r != 0) return -r;
  pool->threads++;
  return 0;
}

int rpc_workers_start(unsigned min_threads, unsigned max_threads, rpc_workers **ret) {
  rpc_workers *pool = calloc(1, sizeof(*pool));
  if (!pool) return -ENOMEM;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->work, NULL);
  pthread_cond_init(&pool->drained, NULL);
  pool->min_threads = min_threads;
  pool->max_threads = max_threads;
  pthread_mutex_lock(&pool->lock);
  for (unsigned i = 0; i < min_threads; i++) {
    int r = spawn_thread(pool);
    if (r < 0) {
      pthread_mutex_unlock(&pool->lock);
      rpc_workers_stop(pool);
      return r;
    }
  }
  pthread_mutex_unlock(&pool->lock);
  *ret = pool;
  return 0;
}

int rpc_workers_submit(rpc_workers *pool, void (*fn)(void *), void *arg) {
  job *j = malloc(sizeof(*j));
  if (!j) return -ENOMEM;
  *j = (job){.fn = fn, .arg = arg};
  pthread_mutex_lock(&pool->lock);
  /* Idle threads only stop counting as idle once they run, so compare
   * what is waiting with who can take it: a burst of submits must start
   * as many threads as it needs. */
  if (pool->queued + 1 > pool->idle && pool->threads < pool->max_threads) {
    int r = spawn_thread(pool);
    if (r < 0 && pool->threads == 0) {
      pthread_mutex_unlock(&pool->lock);
      free(j);
      return r;
    }
  }
  if (pool->tail)
    pool->tail->next = j;
  else
    pool->head = j;
  pool->tail = j;
  pool->queued++;
  pthread_cond_signal(&pool->work);
  pthread_mutex_unlock(&pool->lock);
  return 0;
}

void rpc_workers_stop(rpc_workers *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->lock);
  pool->stopping = true;
  pthread_cond_broadcast(&pool->work);
  while (pool->threads > 0)
    pthread_cond_wait(&pool->drained, &pool->lock);
  pthread_mutex_unlock(&pool->lock);
  pthread_mutex_destroy(&pool->lock);
  pthread_cond_destroy(&pool->work);
  pthread_cond_destroy(&pool->drained);
  free(pool);
}
