/* The arithmetic of the convolutions, the attention and the linear layers, process-wide like the thread
 * count: fp32 throughout, or bf16 operands with fp32 accumulation and fp32 results — what
 * torch.autocast(dtype=torch.bfloat16) does to a convolution, a linear layer and scaled dot-product
 * attention.
 * Activations, parameters, gradients, optimizer state and everything else stay fp32 (the "master" copies);
 * a bf16 convolution rounds its two operands to bf16 on the way in (forward: input and weight;
 * backward-data: output gradient and weight; backward-weights: input and output gradient; on CPUs with
 * AVX-512 BF16 but no AMX, the 3x3 ones of 128 channels or more round them after a Winograd transform,
 * ops/conv2d_winograd_bf16.c), bf16 attention the operands of its four products (q, k, v, the output
 * gradient, the probabilities and the score gradients; softmax stays fp32), on CPUs with AMX and for the
 * shapes where that measured faster (ops/attention_bf16.c; elsewhere attention stays fp32), and a bf16
 * linear layer the operands of its three products (input, weight, output gradient; bias and bias gradient
 * stay fp32), for 256 rows or more on CPUs with AMX, or with AVX-512 BF16 from 128 features in and out
 * (ops/linear_dnnl.c; the time embedding's few rows stay fp32). Convolutions are
 * 83-92 % of the FLOPs of the presets, linear layers most of the rest. */
#ifndef DIFFUSE_PRECISION_H
#define DIFFUSE_PRECISION_H

#include <stdbool.h>

#include "core/error.h"

typedef enum OpsPrecision { OPS_PRECISION_FP32, OPS_PRECISION_BF16 } OpsPrecision;

void ops_set_precision(OpsPrecision precision);
OpsPrecision ops_precision(void);

/* "fp32" or "bf16". */
const char *ops_precision_name(OpsPrecision precision);
/* Whether this CPU runs bf16 convolutions in hardware (AVX-512 BF16 or AMX), as oneDNN reports it. */
bool ops_bf16_supported(void);
/* Whether it has AMX tiles, which the bf16 attention and linear products need to beat their fp32 kernels. */
bool ops_amx_supported(void);

/* The precision named `name` ("fp32" or "bf16", the value of a --precision option); an error when it names
 * none, or names bf16 on a CPU without ops_bf16_supported(). */
int ops_precision_from_name(const char *name, OpsPrecision *precision, Error *err);

#endif
