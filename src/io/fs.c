/* File-system helpers (see fs.h). */
#define _XOPEN_SOURCE 700
#include "io/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

void fs_join(char *out, size_t out_bytes, const char *folder, const char *name) {
    size_t n = strlen(folder);
    snprintf(out, out_bytes, "%s%s%s", folder, n && folder[n - 1] == '/' ? "" : "/", name);
}

bool fs_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool fs_is_folder(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_make_folders(const char *folder, Error *err) {
    char path[8192];
    if (strlen(folder) >= sizeof path) return error_set(err, "%.200s...: path too long", folder);
    snprintf(path, sizeof path, "%s", folder);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return error_set(err, "%s: cannot create folder: %s", path, strerror(errno));
        *p = saved;
        if (saved == '\0') break;
    }
    if (!fs_is_folder(folder)) return error_set(err, "%s: exists and is not a folder", folder);
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

int fs_remove_tree(const char *path, Error *err) {
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return error_set(err, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

void fs_sync_parent(const char *path) {
    char *parent = xstrdup(path);
    char *slash = strrchr(parent, '/');
    if (slash == parent) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(parent, ".");
    int fd = open(parent, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(parent);
}

int fs_rename_folder(const char *from, const char *to, Error *err) {
    if (rename(from, to) != 0) return error_set(err, "%s: cannot rename to %s: %s", from, to, strerror(errno));
    fs_sync_parent(to);
    return 0;
}

/* O_NONBLOCK only for the open itself: a FIFO named by an untrusted file (a shard index, a folder's entry)
 * would otherwise block there forever instead of failing the regular-file test. */
int fs_open_regular(const char *path, Error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat info;
    int flags = fcntl(fd, F_GETFL);
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode) || flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)) {
        close(fd);
        return error_set(err, "%s: not a regular file", path);
    }
    return fd;
}

FILE *fs_open_file(const char *path, Error *err) {
    int fd = fs_open_regular(path, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        error_set(err, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int fs_map_file(const char *path, size_t min_bytes, const char *what, void **map, size_t *n_bytes, Error *err) {
    int fd = fs_open_regular(path, err);
    if (fd < 0) return -1;
    struct stat info;
    if (fstat(fd, &info) != 0) {
        close(fd);
        return error_set(err, "%s: cannot read: %s", path, strerror(errno));
    }
    size_t bytes = (size_t)info.st_size;
    if (bytes < min_bytes || bytes == 0) {
        close(fd);
        return error_set(err, "%s: file is %zu bytes, too short for %s", path, bytes, what);
    }
    void *m = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return error_set(err, "%s: cannot map file: %s", path, strerror(errno));
    *map = m;
    *n_bytes = bytes;
    return 0;
}

void fs_unmap_file(void *map, size_t n_bytes) {
    if (map) munmap(map, n_bytes);
}

char *fs_read_text(const char *path, size_t max_bytes, size_t *n_bytes, Error *err) {
    FILE *f = fs_open_file(path, err);
    if (!f) return NULL;
    char *text = NULL;
    size_t len = 0, cap = 0;
    bool too_big = false;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? 2 * cap : 8192;
            text = xrealloc(text, cap + 1);
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (len > max_bytes) {
            too_big = true;
            break;
        }
        if (got == 0) break;
    }
    bool read_failed = !too_big && ferror(f);
    int saved_errno = errno;
    fclose(f);
    if (too_big || read_failed) {
        if (too_big) error_set(err, "%s: larger than %zu bytes, too large for this kind of file", path, max_bytes);
        else error_set(err, "%s: read failed: %s", path, strerror(saved_errno));
        free(text);
        return NULL;
    }
    text[len] = '\0';
    if (n_bytes) *n_bytes = len;
    return text;
}
