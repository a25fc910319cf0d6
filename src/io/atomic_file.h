/* Files that appear whole or not at all: data goes to a temporary file beside the target, which is
 * flushed, fsync'ed and renamed over the target only when complete. A crash or a full disk at any
 * moment leaves the previous version of the target untouched. */
#ifndef DIFFUSE_ATOMIC_FILE_H
#define DIFFUSE_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef struct AtomicFile {
    FILE *file;
    char *path;     /* the target */
    char *tmp_path; /* where the data goes until commit */
} AtomicFile;

int atomic_file_open(AtomicFile *af, const char *path, Error *err);
int atomic_file_write(AtomicFile *af, const void *data, size_t n_bytes, Error *err);
/* Flushes, syncs and renames into place, then syncs the folder. On failure the temporary file is
 * removed and the target is as it was. */
int atomic_file_commit(AtomicFile *af, Error *err);
/* Discards an open file without touching the target. */
void atomic_file_abort(AtomicFile *af);

/* The whole of a small file (a config, a JSON header) written atomically. */
int atomic_file_write_all(const char *path, const void *data, size_t n_bytes, Error *err);

#endif
