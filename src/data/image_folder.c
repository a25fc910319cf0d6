/* Image folders (see image_folder.h). */
#define _POSIX_C_SOURCE 200809L
#include "data/image_folder.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "data/image_decode.h"
#include "data/transform.h"

/* Deeper than any real layout; bounds the walk when symbolic links form a cycle. */
#define IMAGE_FOLDER_MAX_DEPTH 32

typedef struct PathList {
    char **paths; /* relative to the root */
    size_t n, cap;
} PathList;

static void path_list_add(PathList *list, char *path) {
    if (list->n == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 256;
        list->paths = xrealloc(list->paths, list->cap * sizeof *list->paths);
    }
    list->paths[list->n++] = path;
}

static void path_list_free(PathList *list) {
    for (size_t i = 0; i < list->n; i++) free(list->paths[i]);
    free(list->paths);
    *list = (PathList){0};
}

static char *path_join(const char *a, const char *b) {
    if (!a[0]) return xstrdup(b);
    size_t n = strlen(a) + strlen(b) + 2;
    char *out = xmalloc(n);
    snprintf(out, n, "%s/%s", a, b);
    return out;
}

/* Adds the image files under root/rel to list. Unreadable sub-folders are errors: silently missing
 * part of a data set would be worse. */
static int scan(PathList *list, const char *root, const char *rel, int depth, Error *err) {
    char *dir_path = path_join(root, rel);
    if (depth > IMAGE_FOLDER_MAX_DEPTH) {
        int rc = error_set(err, "%s: folders nested deeper than %d levels (a symbolic link loop?)", dir_path,
                           IMAGE_FOLDER_MAX_DEPTH);
        free(dir_path);
        return rc;
    }
    DIR *d = opendir(dir_path);
    if (!d) {
        int rc = error_set(err, "%s: cannot open folder: %s", dir_path, strerror(errno));
        free(dir_path);
        return rc;
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *child_rel = path_join(rel, e->d_name);
        char *child = path_join(root, child_rel);
        struct stat info;
        if (stat(child, &info) != 0) {
            /* A dangling link is not an image: skip it, like any other non-image entry. */
        } else if (S_ISDIR(info.st_mode)) {
            rc = scan(list, root, child_rel, depth + 1, err);
        } else if (S_ISREG(info.st_mode) && image_decode_is_image_name(e->d_name)) {
            path_list_add(list, child_rel);
            child_rel = NULL;
        }
        free(child_rel);
        free(child);
    }
    closedir(d);
    free(dir_path);
    return rc;
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Class names and each file's label, or no classes when an image lies directly in the root. */
static void assign_classes(Dataset *ds, const PathList *files) {
    for (size_t i = 0; i < files->n; i++)
        if (!strchr(files->paths[i], '/')) return;
    char **names = xmalloc(files->n * sizeof *names);
    for (size_t i = 0; i < files->n; i++) {
        size_t len = (size_t)(strchr(files->paths[i], '/') - files->paths[i]);
        names[i] = xmalloc(len + 1);
        memcpy(names[i], files->paths[i], len);
        names[i][len] = '\0';
    }
    char **sorted = xmalloc(files->n * sizeof *sorted);
    memcpy(sorted, names, files->n * sizeof *sorted);
    qsort(sorted, files->n, sizeof *sorted, compare_strings);
    size_t n_classes = 0;
    for (size_t i = 0; i < files->n; i++)
        if (n_classes == 0 || strcmp(sorted[n_classes - 1], sorted[i]) != 0) sorted[n_classes++] = sorted[i];
    dataset_set_class_names(ds, (const char *const *)sorted, n_classes);
    ds->labels = xmalloc(files->n * sizeof *ds->labels);
    for (size_t i = 0; i < files->n; i++) {
        char **found = bsearch(&names[i], sorted, n_classes, sizeof *sorted, compare_strings);
        CHECK(found, "class of %s not found", files->paths[i]);
        ds->labels[i] = (int)(found - sorted);
    }
    for (size_t i = 0; i < files->n; i++) free(names[i]);
    free(names);
    free(sorted);
}

/* One image into its slot: decode, convert the channels, resize and crop. */
static int load_one(uint8_t *slot, const char *path, const Dataset *ds, ResizeFilter filter, Error *err) {
    DecodedImage img;
    if (image_decode_file(&img, path, err)) return -1;
    uint8_t *converted = img.pixels;
    if (img.channels != ds->channels) {
        converted = xmalloc(img.height * img.width * ds->channels);
        transform_channels(converted, ds->channels, img.pixels, img.channels, img.height * img.width);
    }
    resize_crop_u8(slot, ds->height, ds->width, converted, img.height, img.width, ds->channels, filter);
    if (converted != img.pixels) free(converted);
    image_decode_free(&img);
    return 0;
}

int image_folder_read(Dataset *ds, const char *root, const DatasetOptions *options, Error *err) {
    *ds = (Dataset){0};
    PathList files = {0};
    if (scan(&files, root, "", 0, err)) {
        path_list_free(&files);
        return -1;
    }
    if (files.n == 0) {
        path_list_free(&files);
        return error_set(err, "%s: no images found (searched recursively for .png, .jpg and .jpeg files)", root);
    }
    qsort(files.paths, files.n, sizeof *files.paths, compare_strings);
    char **full = xmalloc(files.n * sizeof *full);
    for (size_t i = 0; i < files.n; i++) full[i] = path_join(root, files.paths[i]);

    /* The target shape: the options', or the first readable image's. */
    size_t height = options->resolution, width = options->resolution, channels = options->channels;
    char **messages = xcalloc(files.n, sizeof *messages); /* NULL: loaded */
    size_t first_tried = 0;
    if (!height || !channels) {
        for (; first_tried < files.n; first_tried++) {
            DecodedImage img;
            Error probe_err;
            if (image_decode_file(&img, full[first_tried], &probe_err) == 0) {
                if (!height) height = img.height, width = img.width;
                if (!channels) channels = img.channels;
                image_decode_free(&img);
                break;
            }
            messages[first_tried] = xstrdup(probe_err.message);
        }
    }
    int rc = 0;
    if (first_tried == files.n) {
        rc = error_set(err, "%s: none of the %zu image files can be read (first: %s)", root, files.n, messages[0]);
        goto done;
    }
    if ((rc = dataset_alloc(ds, root, files.n, height, width, channels, false, err))) goto done;
    assign_classes(ds, &files);

    size_t image_bytes = dataset_image_bytes(ds);
    long long n_files = (long long)files.n;
#pragma omp parallel for schedule(dynamic, 8)
    for (long long i = (long long)first_tried; i < n_files; i++) {
        Error file_err;
        if (load_one(ds->owned_pixels + (size_t)i * image_bytes, full[i], ds, options->resize, &file_err))
            messages[i] = xstrdup(file_err.message);
    }

    /* Drop the unreadable images, keeping the order of the rest. */
    size_t kept = 0, first_bad = files.n;
    for (size_t i = 0; i < files.n; i++) {
        if (messages[i]) {
            if (first_bad == files.n) first_bad = i;
            ds->n_skipped++;
            continue;
        }
        if (kept != i) {
            memcpy(ds->owned_pixels + kept * image_bytes, ds->owned_pixels + i * image_bytes, image_bytes);
            if (ds->labels) ds->labels[kept] = ds->labels[i];
        }
        kept++;
    }
    if (ds->n_skipped) {
        snprintf(ds->skipped_first, sizeof ds->skipped_first, "%s", messages[first_bad]);
        if (options->strict) {
            rc = error_set(err, "%s (%zu of the %zu images in %s are unreadable; without strict mode they are "
                           "skipped)", messages[first_bad], ds->n_skipped, files.n, root);
            goto done;
        }
        if (kept == 0) {
            rc = error_set(err, "%s: none of the %zu image files can be read (first: %s)", root, files.n,
                           messages[first_bad]);
            goto done;
        }
    }
    /* The slots of skipped images stay allocated at the end: usually a few, and shrinking would need a
     * second copy of the whole array for a moment. */
    ds->count = kept;
done:
    if (rc) dataset_free(ds);
    for (size_t i = 0; i < files.n; i++) {
        free(messages[i]);
        free(full[i]);
    }
    free(messages);
    free(full);
    path_list_free(&files);
    return rc;
}
