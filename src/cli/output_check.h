/* Checks on output paths before a long computation, so that a typo in -o costs a one-line error at once
 * rather than minutes of sampling followed by a failed write. The writes themselves stay atomic; these
 * checks only catch the common mistakes early (a missing or unwritable folder, a folder where a file is
 * expected). */
#ifndef DIFFUSE_CLI_OUTPUT_CHECK_H
#define DIFFUSE_CLI_OUTPUT_CHECK_H

#include "core/error.h"

/* `path` can be created or replaced as a file: its folder exists and is writable, and it is not a folder.
 * `option` ("-o") names it in the message. */
int output_check_file(const char *path, const char *option, Error *err);
/* `path` is a writable folder, or can be created as one (its parent exists and is writable). */
int output_check_folder(const char *path, const char *option, Error *err);
/* Creates the folder checked above (one level). */
int output_make_folder(const char *path, Error *err);

#endif
