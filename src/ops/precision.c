/* The convolutions' precision setting (see precision.h). */
#include "ops/precision.h"

#include <string.h>

#include <oneapi/dnnl/dnnl.h>

static OpsPrecision current = OPS_PRECISION_FP32;

void ops_set_precision(OpsPrecision precision) { current = precision; }

OpsPrecision ops_precision(void) { return current; }

const char *ops_precision_name(OpsPrecision precision) { return precision == OPS_PRECISION_BF16 ? "bf16" : "fp32"; }

/* ISA values are bit sets, each including the ones it extends (AMX includes AVX-512 BF16). */
static bool cpu_has(dnnl_cpu_isa_t want) {
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)want) == (unsigned)want;
}

/* Below AVX-512 BF16, oneDNN emulates bf16 with more instructions than fp32 takes. */
bool ops_bf16_supported(void) { return cpu_has(dnnl_cpu_isa_avx512_core_bf16); }

bool ops_amx_supported(void) { return cpu_has(dnnl_cpu_isa_avx512_core_amx); }

int ops_precision_from_name(const char *name, OpsPrecision *precision, Error *err) {
    if (strcmp(name, "fp32") == 0) *precision = OPS_PRECISION_FP32;
    else if (strcmp(name, "bf16") == 0) *precision = OPS_PRECISION_BF16;
    else return error_set(err, "unknown --precision '%s' (supported: fp32, bf16)", name);
    if (*precision == OPS_PRECISION_BF16 && !ops_bf16_supported())
        return error_set(err, "--precision bf16: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX); use fp32");
    return 0;
}
