/*
 * A persistent thread pool. Workers wait for a generation counter to change,
 * spinning briefly (a decode step issues hundreds of small jobs, and waking a
 * sleeping thread costs more than the job), then sleeping on a condition
 * variable so an idle engine uses no CPU.
 */
#define _GNU_SOURCE
#include "kernels/kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ITERATIONS 20000

struct halo_threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation; /* bumped once per run */
    atomic_int pending;     /* workers still running the current job */
    atomic_bool stop;
    halo_task_fn fn;
    void *arg;
};

typedef struct worker_arg {
    halo_threadpool *pool;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p) {
    worker_arg *wa = p;
    halo_threadpool *pool = wa->pool;
    int ith = wa->ith;
    free(wa);
    /* generation is 0 when the pool is made; reading it here instead would miss
     * a job posted before this thread got to run */
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < SPIN_ITERATIONS) {
                if (spins % 256 == 0) sched_yield();
                else cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->lock);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = atomic_load(&pool->generation);
        pool->fn(pool->arg, ith, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

halo_threadpool *halo_threadpool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    halo_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
        if (!pool->threads) {
            halo_threadpool_free(pool);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) *wa = (worker_arg){pool, i};
            if (!wa || pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
                /* run with the threads that did start (workers read n_threads per job) */
                free(wa);
                pool->n_threads = i;
                break;
            }
        }
    }
    return pool;
}

void halo_threadpool_free(halo_threadpool *pool) {
    if (!pool) return;
    if (pool->threads) {
        atomic_store(&pool->stop, true);
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
        for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
        free(pool->threads);
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool);
}

int halo_threadpool_n_threads(const halo_threadpool *pool) { return pool ? pool->n_threads : 1; }

void halo_threadpool_run(halo_threadpool *pool, halo_task_fn fn, void *arg) {
    if (!pool || pool->n_threads <= 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, pool->n_threads - 1);
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    fn(arg, 0, pool->n_threads);
    /* yield now and then: with more threads than free cores, pure spinning would
     * keep the very workers we wait for off the CPU */
    for (unsigned spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0;)
        if (++spins % 256 == 0) sched_yield();
        else cpu_relax();
}
