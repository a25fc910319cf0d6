#include "core/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <string.h>

bool cpu_splits_fma512(void) {
    unsigned eax, ebx, ecx, edx;
    char vendor[13] = {0};
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
    memcpy(vendor, &ebx, 4);
    memcpy(vendor + 4, &edx, 4);
    memcpy(vendor + 8, &ecx, 4);
    if (strcmp(vendor, "AuthenticAMD") != 0 || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    unsigned family = (eax >> 8) & 0xf;
    if (family == 0xf) family += (eax >> 20) & 0xff;
    /* Zen 3 shares family 19h but has no AVX-512; leaf 7 EBX bit 16 is AVX-512F. */
    return family == 0x19 && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx >> 16 & 1);
}
#else
bool cpu_splits_fma512(void) { return false; }
#endif
