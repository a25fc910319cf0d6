/* Command-line option parsing and help text (see options.h). */
#include "cli/options.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const Option *find_option(const OptionSpec *spec, const char *name, size_t name_len) {
    for (const Option *o = spec->options; o && o->name; o++)
        if (strlen(o->name) == name_len && strncmp(o->name, name, name_len) == 0) return o;
    return NULL;
}

/* The option -c stands for, or NULL. */
static const Option *find_alias(const OptionSpec *spec, char c) {
    for (const OptionAlias *a = spec->aliases; a && a->short_name; a++)
        if (a->short_name == c) return find_option(spec, a->name, strlen(a->name));
    return NULL;
}

static char alias_of(const OptionSpec *spec, const Option *o) {
    for (const OptionAlias *a = spec->aliases; a && a->short_name; a++)
        if (strcmp(a->name, o->name) == 0) return a->short_name;
    return 0;
}

static int set_value(const OptionSpec *spec, const Option *o, const char *text, Error *err) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPTION_INT: {
        long v = strtol(text, &end, 10);
        if (end == text || *end != '\0' || errno == ERANGE || v < INT_MIN || v > INT_MAX)
            return error_set(err, "--%s expects a whole number, got '%s' (see diffuse %s --help)", o->name, text,
                             spec->command);
        *(int *)o->value = (int)v;
        return 0;
    }
    case OPTION_FLOAT: {
        double v = strtod(text, &end);
        if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v))
            return error_set(err, "--%s expects a number, got '%s' (see diffuse %s --help)", o->name, text,
                             spec->command);
        *(double *)o->value = v;
        return 0;
    }
    case OPTION_STRING: *(const char **)o->value = text; return 0;
    case OPTION_FLAG: *(bool *)o->value = true; return 0;
    }
    return error_set(err, "--%s: bad option type", o->name);
}

int options_parse(const OptionSpec *spec, int argc, char **argv, ParsedArgs *args, Error *err) {
    *args = (ParsedArgs){0};
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            args->help = true;
            options_print_help(spec, stdout);
            return 0;
        }
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            const Option *short_option = arg[1] != '-' && arg[2] == '\0' ? find_alias(spec, arg[1]) : NULL;
            if (short_option) {
                if (short_option->type == OPTION_FLAG) {
                    *(bool *)short_option->value = true;
                    continue;
                }
                if (i + 1 >= argc)
                    return error_set(err, "%s needs a value (%s)", arg,
                                     short_option->value_name ? short_option->value_name : "");
                if (set_value(spec, short_option, argv[++i], err)) return -1;
                continue;
            }
            if (arg[1] != '-')
                return error_set(err, "unknown option '%s'; options are spelled --name (see diffuse %s --help)", arg,
                                 spec->command);
            const char *name = arg + 2, *eq = strchr(name, '=');
            size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
            const Option *o = find_option(spec, name, name_len);
            if (!o) return error_set(err, "unknown option '--%.*s' (see diffuse %s --help)", (int)name_len, name,
                                     spec->command);
            if (o->type == OPTION_FLAG) {
                if (eq) return error_set(err, "--%s takes no value", o->name);
                *(bool *)o->value = true;
                continue;
            }
            const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) return error_set(err, "--%s needs a value (%s)", o->name, o->value_name ? o->value_name : "");
            if (set_value(spec, o, value, err)) return -1;
            continue;
        }
        if (args->n_positional >= spec->max_positional || args->n_positional >= OPTIONS_MAX_POSITIONAL)
            return error_set(err, "unexpected argument '%s' (usage: %s)", arg, spec->usage);
        args->positional[args->n_positional++] = arg;
    }
    if (args->n_positional < spec->min_positional)
        return error_set(err, "missing arguments (usage: %s)", spec->usage);
    return 0;
}

void options_print_help(const OptionSpec *spec, FILE *out) {
    fprintf(out, "usage: %s\n\n%s\n", spec->usage, spec->summary);
    if (!spec->options || !spec->options->name) return;
    fprintf(out, "\noptions:\n");
    for (const Option *o = spec->options; o->name; o++) {
        char left[64], short_form[8] = "";
        char short_name = alias_of(spec, o);
        if (short_name) snprintf(short_form, sizeof short_form, "-%c, ", short_name);
        if (o->type == OPTION_FLAG) snprintf(left, sizeof left, "%s--%s", short_form, o->name);
        else snprintf(left, sizeof left, "%s--%s %s", short_form, o->name, o->value_name ? o->value_name : "VALUE");
        fprintf(out, "  %-22s %s", left, o->help);
        switch (o->type) {
        case OPTION_INT: fprintf(out, " (default %d)", *(const int *)o->value); break;
        case OPTION_FLOAT: /* NaN: the default depends on other options, and the help text says how */
            if (!isnan(*(const double *)o->value)) fprintf(out, " (default %g)", *(const double *)o->value);
            break;
        case OPTION_STRING: {
            const char *v = *(const char *const *)o->value;
            if (v) fprintf(out, " (default %s)", v);
            break;
        }
        case OPTION_FLAG: break;
        }
        fprintf(out, "\n");
    }
    fprintf(out, "  %-22s %s\n", "--help", "show this help");
}
