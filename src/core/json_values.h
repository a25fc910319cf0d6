/* A bound on what parsing JSON takes. cJSON keeps each value in a node of about 100 bytes, plus copies of
 * its strings, so a 100 MiB safetensors header of "[0,0,0,..." took 4.2 GB and 14 s to parse (and a 64 MiB
 * scheduler_config.json 2.7 GB). Readers of untrusted JSON count the values first and refuse text with more
 * than JSON_MAX_VALUES. At the bound, `diffuse info` peaks at 0.18 GB on a header of numbers and 0.62 GB on
 * one of 2^21 short metadata strings (92 MB). */
#ifndef DIFFUSE_JSON_VALUES_H
#define DIFFUSE_JSON_VALUES_H

#include <stddef.h>

#include "core/error.h"

/* A safetensors header takes 7-14 values per tensor: 2^21 hold about 150,000 tensors. */
#define JSON_MAX_VALUES ((size_t)1 << 21)

/* 0 when text (n bytes) holds at most max_values JSON values, else an error naming source. */
int json_check_values(const char *text, size_t n, size_t max_values, const char *source, Error *err);

#endif
