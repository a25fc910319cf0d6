/* Table-driven command-line options for the subcommands: each command lists its options once (name,
 * type, where the value goes, help) and gets parsing, type checks and its --help text from the table.
 * Accepted forms: --name value, --name=value, --flag, and -x value / -x for an option given a short name
 * in the spec's aliases; "--" ends the options. A value's variable holds its default before parsing, and
 * --help shows it. */
#ifndef DIFFUSE_CLI_OPTIONS_H
#define DIFFUSE_CLI_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "core/error.h"

#define OPTIONS_MAX_POSITIONAL 8

typedef enum OptionType {
    OPTION_INT,    /* int *: a whole decimal number in int range */
    OPTION_FLOAT,  /* double *: a finite number */
    OPTION_STRING, /* const char **: points into argv */
    OPTION_FLAG,   /* bool *: set to true, takes no value */
} OptionType;

typedef struct Option {
    const char *name; /* without the leading "--"; NULL ends a table */
    OptionType type;
    void *value;
    const char *value_name; /* "N", "PATH": shown in --help */
    const char *help;
} Option;

/* -x as another spelling of --name. */
typedef struct OptionAlias {
    char short_name; /* 0 ends a table */
    const char *name;
} OptionAlias;

typedef struct OptionSpec {
    const char *command; /* "info": messages say "see diffuse info --help" */
    const char *usage;   /* "diffuse info <model> [options]" */
    const char *summary; /* what the command does, a few lines */
    const Option *options;
    int min_positional, max_positional;
    const OptionAlias *aliases; /* NULL: no short names */
} OptionSpec;

typedef struct ParsedArgs {
    const char *positional[OPTIONS_MAX_POSITIONAL];
    int n_positional;
    bool help; /* --help or -h was given: options_parse printed the help; the command just succeeds */
} ParsedArgs;

/* argv[0] is the command name. Unknown options, missing or malformed values and wrong numbers of
 * positional arguments are errors naming the argument. */
int options_parse(const OptionSpec *spec, int argc, char **argv, ParsedArgs *args, Error *err);

void options_print_help(const OptionSpec *spec, FILE *out);

#endif
