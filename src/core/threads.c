/* Thread-count setting (see threads.h). */
#include "core/threads.h"

#include <omp.h>

void threads_set(int n) {
    if (n <= 0) n = threads_available();
    omp_set_num_threads(n);
}

int threads_get(void) { return omp_get_max_threads(); }

int threads_available(void) { return omp_get_num_procs(); }
