/* File-system helpers shared by the model-folder, run-folder and checkpoint code: path joining, kind
 * tests, small text files, folder trees. */
#ifndef DIFFUSE_FS_H
#define DIFFUSE_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

/* out = folder + "/" + name (no doubled slash). */
void fs_join(char *out, size_t out_bytes, const char *folder, const char *name);
bool fs_is_file(const char *path);
bool fs_is_folder(const char *path);
/* mkdir -p; an error when a part exists and is not a folder. */
int fs_make_folders(const char *folder, Error *err);
/* rm -r of a folder this program wrote (no symlinks followed). */
int fs_remove_tree(const char *path, Error *err);
/* fsync of the folder holding path, so that a rename or a new entry in it survives a crash. */
void fs_sync_parent(const char *path);
/* Renames a finished folder into place and syncs its parent, so the rename survives a crash. */
int fs_rename_folder(const char *from, const char *to, Error *err);
/* Opens a regular file for reading: its descriptor (close it), or -1 with an error naming the file when it
 * cannot be opened or is not a regular file (a folder, a FIFO, a device). */
int fs_open_regular(const char *path, Error *err);
/* The same as a stdio stream (fclose it), or NULL with the error. */
FILE *fs_open_file(const char *path, Error *err);
/* Maps a regular file read-only: *map and *n_bytes on success. An error names the file when it cannot be
 * opened, is not a regular file, or is shorter than min_bytes (`what` says what it should hold, e.g. "a
 * safetensors header"). Unmap with fs_unmap_file. */
int fs_map_file(const char *path, size_t min_bytes, const char *what, void **map, size_t *n_bytes, Error *err);
void fs_unmap_file(void *map, size_t n_bytes);
/* The whole of a text file of at most max_bytes, NUL-terminated; free() it. */
char *fs_read_text(const char *path, size_t max_bytes, size_t *n_bytes, Error *err);

#endif
