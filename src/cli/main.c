/* The diffuse program: dispatches to a subcommand from the table below. The only place that prints an
 * error and exits with status 1: every failure below it comes back as an Error, printed here as one line
 * "diffuse <command>: <message>". */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "dist/dist.h"

typedef struct Command {
    const char *name;
    const char *help; /* one line for `diffuse --help` */
    int (*run)(int argc, char **argv, Error *err);
} Command;

static const Command commands[] = {
    {"train", "train a model on a data set into a run folder (resumable, data-parallel under mpirun)", cmd_train},
    {"sample", "generate images from a run or model folder (DDPM, DDIM, DPM-Solver++) as PNG", cmd_sample},
    {"eval", "loss and bits/dim of a model on a data set", cmd_eval},
    {"prepare", "decode a data set once into a packed file for training", cmd_prepare},
    {"info", "show a model's config, parameter count, FLOPs per image and training memory", cmd_info},
    {"init", "write a freshly initialised model folder (or, with --pipeline, a run folder)", cmd_init},
    {"convert", "rewrite a diffusers model folder as F32 with current tensor names", cmd_convert},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *out) {
    fprintf(out, "usage: diffuse <command> [arguments] [options]\n\n"
                 "Trains and samples diffusion models (diffusers UNet2DModel compatible).\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\n`diffuse <command> --help` describes a command and its options.\n");
}

/* Messages are one line: a newline inside one would split it. */
static void print_error(const char *command, Error *err) {
    for (char *p = err->message; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "diffuse %s: %s\n", command, err->message);
}

int main(int argc, char **argv) {
    dist_init(&argc, &argv); /* joins the job under mpirun; a plain process is rank 0 of 1 */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        Error err = {{0}};
        int rc = commands[i].run(argc - 1, argv + 1, &err);
        if (rc != 0) {
            /* In a multi-rank job a failing rank ends every rank at once, naming itself. */
            if (dist_world_size() > 1) dist_abort(1, err.message);
            print_error(commands[i].name, &err);
        }
        dist_finalize();
        return rc == 0 ? 0 : 1;
    }
    char names[256] = "";
    for (size_t i = 0; i < N_COMMANDS; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", commands[i].name);
    fprintf(stderr, "diffuse: unknown command '%s' (commands: %s; see diffuse --help)\n", argv[1], names);
    return 1;
}
