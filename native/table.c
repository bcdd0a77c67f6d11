/* This set's kernels by the names the TypeScript side calls (src/backend/addon.ts), for addon.c to register. */
#include "kernels.h"

const kernel_entry diffuse_kernels[] = {
    {"sgemm", sgemm},
    {"adam", adam},
    {"lerp", lerp},
    {"geluLayerNorm", gelu_layer_norm},
    {"geluLayerNormGrad", gelu_layer_norm_grad},
    {"columnSums", column_sums},
    {"binary", binary},
    {"conv", conv},
    {"groupNorm", group_norm},
    {"silu", silu},
    {"siluGrad", silu_grad},
    {"groupNormGrad", group_norm_grad},
    {"middleSums", middle_sums},
    {"softmaxRows", softmax_rows},
    {"softmaxRowsGrad", softmax_rows_grad},
    {"copyRuns", copy_runs},
    {"upsample2x", upsample2x},
    {"upsample2xGrad", upsample2x_grad},
    {"attention", attention},
    {"attentionGrad", attention_grad},
    {NULL, NULL},
};
