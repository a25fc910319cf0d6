/* The subcommands of the diffuse program, one file each (cmd_<name>.c). A command gets its own argv
 * (argv[0] is its name), prints its results to stdout and returns 0, or returns -1 with the reason in
 * err; main.c prints that message and exits 1. A new command is a function here and a row in main.c. */
#ifndef DIFFUSE_CLI_COMMANDS_H
#define DIFFUSE_CLI_COMMANDS_H

#include "core/error.h"

int cmd_info(int argc, char **argv, Error *err);
int cmd_init(int argc, char **argv, Error *err);
int cmd_convert(int argc, char **argv, Error *err);
int cmd_train(int argc, char **argv, Error *err);
int cmd_sample(int argc, char **argv, Error *err);
int cmd_eval(int argc, char **argv, Error *err);
int cmd_prepare(int argc, char **argv, Error *err);

#endif
