/* The thread count shared by our OpenMP loops and the kernel libraries (oneDNN runs on the same OpenMP
 * runtime). Results never depend on it except where a library's reduction order does; tests that compare
 * runs bit for bit keep it fixed. */
#ifndef DIFFUSE_THREADS_H
#define DIFFUSE_THREADS_H

/* n <= 0 means every available core. */
void threads_set(int n);
int threads_get(void);
/* Cores available to this process. */
int threads_available(void);

#endif
