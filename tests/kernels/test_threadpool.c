/* The thread pool: every thread runs every job exactly once, pools come and go. */
#include "harness.h"
#include "kernels/kernels.h"

#include <stdatomic.h>

typedef struct job {
    atomic_long calls;
    long per_thread[16];
} job;

static void task(void *arg, int ith, int nth) {
    job *j = arg;
    atomic_fetch_add(&j->calls, 1);
    if (ith < nth && ith < 16) j->per_thread[ith]++;
}

int main(void) {
    for (int n = 1; n <= 4; n++) {
        /* fresh pools, used at once: a job posted before a worker starts must not be lost */
        for (int rep = 0; rep < 50; rep++) {
            halo_threadpool *p = halo_threadpool_new(n);
            job j = {0};
            halo_threadpool_run(p, task, &j);
            CHECK(atomic_load(&j.calls) == halo_threadpool_n_threads(p));
            halo_threadpool_free(p);
        }
        halo_threadpool *p = halo_threadpool_new(n);
        CHECK(halo_threadpool_n_threads(p) == n);
        job j = {0};
        const int runs = 5000;
        for (int r = 0; r < runs; r++) halo_threadpool_run(p, task, &j);
        CHECK(atomic_load(&j.calls) == (long)runs * n);
        for (int t = 0; t < n; t++) CHECK(j.per_thread[t] == runs);
        halo_threadpool_free(p);
    }
    job j = {0};
    halo_threadpool_run(NULL, task, &j);
    CHECK(atomic_load(&j.calls) == 1 && halo_threadpool_n_threads(NULL) == 1);
    return halo_test_finish("threadpool");
}
