/* The parameter table: every learned tensor of a model as {name, shape, offset, initialisation}, names
 * equal to the PyTorch state_dict keys and entries in state_dict order. One flat float buffer of
 * n_floats holds all parameters at their offsets (tensors packed back to back, PyTorch layout), so the
 * gradients, optimizer moments and EMA are buffers of the same size and layout, and the optimizer,
 * zero-grad, all-reduce and checkpoint I/O are one loop each (STYLE.md, Memory).
 *
 * Initialisation mirrors PyTorch's module defaults, in distribution (not bit for bit):
 *   nn.Conv2d / nn.Linear weight: kaiming_uniform_(a = sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 *     bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the weight's fan_in (in_features, or C_in * kH * kW);
 *   nn.GroupNorm: weight 1, bias 0;   nn.Embedding: N(0, 1).
 * Values come from the counter-based RNG keyed by (seed, tensor name), so a tensor's initial values do not
 * depend on which other tensors the model has. */
#ifndef DIFFUSE_PARAMS_H
#define DIFFUSE_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

/* Longest state_dict key plus one ("up_blocks.7.upsamplers.0.time_emb_proj.weight" is 47). */
#define PARAM_NAME_BYTES 96

typedef enum ParamInit {
    PARAM_INIT_FAN_IN_UNIFORM, /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): conv and linear weights and biases */
    PARAM_INIT_ONES,           /* norm weights */
    PARAM_INIT_ZEROS,          /* norm biases */
    PARAM_INIT_NORMAL,         /* N(0, 1): embedding tables */
} ParamInit;

const char *param_init_name(ParamInit init);

typedef struct ParamEntry {
    char name[PARAM_NAME_BYTES];
    int ndim;
    size_t shape[TENSOR_MAX_DIMS]; /* PyTorch order, as in the safetensors file */
    size_t numel;
    size_t offset; /* in floats, into the flat buffer */
    ParamInit init;
    size_t fan_in; /* for PARAM_INIT_FAN_IN_UNIFORM */
} ParamEntry;

typedef struct ParamTable {
    ParamEntry *entries;
    size_t n_entries, capacity;
    size_t n_floats; /* buffer length = number of parameters */
} ParamTable;

void param_table_init(ParamTable *table);
void param_table_free(ParamTable *table);

/* Appends a tensor at the end of the buffer and returns its index. CHECKs the name is new. */
size_t param_table_add(ParamTable *table, const char *name, int ndim, const size_t *shape, ParamInit init,
                       size_t fan_in);

/* Index of `name`, or -1. */
long param_table_find(const ParamTable *table, const char *name);

/* A view of entry `index` inside a buffer laid out by the table (parameters, gradients, moments). */
Tensor param_table_view(const ParamTable *table, float *buffer, size_t index);
/* The same by name; CHECKs that the name exists (for wiring modules at init, never per step). */
Tensor param_table_view_named(const ParamTable *table, float *buffer, const char *name);

/* Writes "(224, 3, 3, 3)" into buf. */
const char *param_entry_shape_str(const ParamEntry *entry, char *buf, size_t buf_bytes);

/* Fills every tensor with its initial values, drawn from (seed, tensor name). Identical for any thread
 * count. */
void param_table_fill_init(const ParamTable *table, float *params, uint64_t seed);

#endif
