/* Atomic file writes (see atomic_file.h). */
#define _POSIX_C_SOURCE 200809L
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "io/fs.h"

static void atomic_file_release(AtomicFile *af) {
    free(af->path);
    free(af->tmp_path);
    *af = (AtomicFile){0};
}

int atomic_file_open(AtomicFile *af, const char *path, Error *err) {
    *af = (AtomicFile){0};
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        return error_set(err, "%s: cannot create file: %s (check that the folder exists and is writable)",
                         path, strerror(e));
    }
    af->file = f;
    af->path = xstrdup(path);
    af->tmp_path = tmp;
    return 0;
}

int atomic_file_write(AtomicFile *af, const void *data, size_t n_bytes, Error *err) {
    if (n_bytes && fwrite(data, 1, n_bytes, af->file) != n_bytes)
        return error_set(err, "%s: write failed: %s (is the disk full?)", af->path, strerror(errno));
    return 0;
}

int atomic_file_commit(AtomicFile *af, Error *err) {
    int failed = fflush(af->file) != 0 || fsync(fileno(af->file)) != 0;
    int saved_errno = errno;
    failed |= fclose(af->file) != 0;
    af->file = NULL;
    if (!failed && rename(af->tmp_path, af->path) != 0) {
        saved_errno = errno;
        failed = 1;
    }
    if (failed) {
        error_set(err, "%s: could not complete the write: %s (is the disk full?); the previous file is unchanged",
                  af->path, strerror(saved_errno));
        unlink(af->tmp_path);
        atomic_file_release(af);
        return -1;
    }
    fs_sync_parent(af->path);
    atomic_file_release(af);
    return 0;
}

void atomic_file_abort(AtomicFile *af) {
    if (af->file) fclose(af->file);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_file_release(af);
}

int atomic_file_write_all(const char *path, const void *data, size_t n_bytes, Error *err) {
    AtomicFile af;
    if (atomic_file_open(&af, path, err)) return -1;
    if (atomic_file_write(&af, data, n_bytes, err)) {
        atomic_file_abort(&af);
        return -1;
    }
    return atomic_file_commit(&af, err);
}
