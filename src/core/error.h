/* Errors from input and environment (missing file, malformed safetensors, disk full) travel back to the
 * caller as a return value of -1 plus a message in an Error; only the CLI prints them and exits. The
 * message names the file and the problem and, where one exists, what to do about it. */
#ifndef DIFFUSE_ERROR_H
#define DIFFUSE_ERROR_H

#include "core/check.h"

typedef struct Error {
    char message[1024];
} Error;

/* Formats the message into err (which may be NULL) and returns -1, so callers can `return error_set(...)`. */
int error_set(Error *err, const char *fmt, ...) DIFFUSE_PRINTF(2, 3);

/* Prepends "context: " to an existing message, e.g. the file being read when a nested call failed. */
int error_prefix(Error *err, const char *fmt, ...) DIFFUSE_PRINTF(2, 3);

#endif
