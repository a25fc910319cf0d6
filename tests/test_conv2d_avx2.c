/* Every conv2d test again with oneDNN held to AVX2, the kernels of CPUs without AVX-512: their forward
 * kernels add a sum post-op's destination partway through the input channels, they have no Winograd
 * and no bf16, and the fast path must pick its plans accordingly (conv2d_dnnl.c). The cap must be set
 * before oneDNN generates its first kernel, so it takes a process of its own. */
#include <oneapi/dnnl/dnnl.h>

#define main conv2d_tests
#include "test_conv2d.c"
#undef main

int main(void) {
    CHECK(dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2) == dnnl_success, "oneDNN refused to hold its kernels to AVX2");
    printf("  oneDNN held to AVX2\n");
    return conv2d_tests();
}
