/* What the CPU is, where a kernel choice depends on more than its instruction set. */
#ifndef DIFFUSE_CPU_H
#define DIFFUSE_CPU_H

#include <stdbool.h>

/* Whether the cores run each 512-bit FMA as two 256-bit halves (AMD Zen 4: family 19h with AVX-512), at
 * half the FMAs per cycle of cores with full 512-bit units, while loads, stores and adds keep their pace:
 * there, work that trades multiplies for memory traffic (Winograd convolution) pays off sooner. */
bool cpu_splits_fma512(void);

#endif
