/* Output path checks (see output_check.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli/output_check.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The folder part of path ("." when it has none) into buf. */
static void parent_of(const char *path, char *buf, size_t buf_bytes) {
    snprintf(buf, buf_bytes, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0'; /* "out/" names the folder out */
    char *slash = strrchr(buf, '/');
    if (!slash) snprintf(buf, buf_bytes, ".");
    else if (slash == buf) buf[1] = '\0';
    else *slash = '\0';
}

static int check_parent(const char *path, const char *option, Error *err) {
    char parent[4096];
    parent_of(path, parent, sizeof parent);
    struct stat st;
    if (stat(parent, &st) != 0)
        return error_set(err, "%s %s: folder '%s' does not exist (create it first)", option, path, parent);
    if (!S_ISDIR(st.st_mode)) return error_set(err, "%s %s: '%s' is not a folder", option, path, parent);
    if (access(parent, W_OK | X_OK) != 0)
        return error_set(err, "%s %s: folder '%s' is not writable", option, path, parent);
    return 0;
}

int output_check_file(const char *path, const char *option, Error *err) {
    if (!path[0]) return error_set(err, "%s: empty path", option);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return error_set(err, "%s %s: is a folder; give a file name", option, path);
    return check_parent(path, option, err);
}

int output_check_folder(const char *path, const char *option, Error *err) {
    if (!path[0]) return error_set(err, "%s: empty path", option);
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return error_set(err, "%s %s: exists and is not a folder", option, path);
        if (access(path, W_OK | X_OK) != 0) return error_set(err, "%s %s: folder is not writable", option, path);
        return 0;
    }
    return check_parent(path, option, err);
}

int output_make_folder(const char *path, Error *err) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return error_set(err, "%s: cannot create folder: %s", path, strerror(errno));
    return 0;
}
