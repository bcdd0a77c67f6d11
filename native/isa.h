/*
 * On x86-64 every kernel file is compiled three times (binding.gyp): for AVX-512, for AVX2 + FMA and for
 * SSE2 alone, and addon.c picks one set when the addon loads (so one build runs on any x86-64, at its
 * widest vectors). ISA names the set being compiled (e.g. _avx2): every function shared between kernel
 * files takes it as a suffix here, so the sets link into one addon side by side. Elsewhere one set,
 * _generic, is built (the vector types map to NEON on arm64).
 */
#ifndef DIFFUSE_ISA_H
#define DIFFUSE_ISA_H

#ifndef ISA
#define ISA _generic
#endif
#define ISA_CAT2(a, b) a##b
#define ISA_CAT(a, b) ISA_CAT2(a, b)
#define ISA_NAME(name) ISA_CAT(name, ISA)

/* The kernels addon.c registers (kernels.h) */
#define sgemm ISA_NAME(sgemm)
#define adam ISA_NAME(adam)
#define lerp ISA_NAME(lerp)
#define gelu_layer_norm ISA_NAME(gelu_layer_norm)
#define gelu_layer_norm_grad ISA_NAME(gelu_layer_norm_grad)
#define column_sums ISA_NAME(column_sums)
#define binary ISA_NAME(binary)
#define broadcast_binary ISA_NAME(broadcast_binary)
#define middle_sums ISA_NAME(middle_sums)
#define conv ISA_NAME(conv)
#define group_norm ISA_NAME(group_norm)
#define group_norm_grad ISA_NAME(group_norm_grad)
#define softmax_rows ISA_NAME(softmax_rows)
#define softmax_rows_grad ISA_NAME(softmax_rows_grad)
#define copy_runs ISA_NAME(copy_runs)
#define upsample2x ISA_NAME(upsample2x)
#define upsample2x_grad ISA_NAME(upsample2x_grad)
#define attention ISA_NAME(attention)
#define attention_grad ISA_NAME(attention_grad)
#define silu ISA_NAME(silu)
#define silu_grad ISA_NAME(silu_grad)
#define diffuse_kernels ISA_NAME(diffuse_kernels)

/* What the convolution files share (conv.h) */
#define add_bias ISA_NAME(add_bias)
#define direct_forward_image ISA_NAME(direct_forward_image)
#define direct_filter_grad_image ISA_NAME(direct_filter_grad_image)
#define narrow_eligible ISA_NAME(narrow_eligible)
#define narrow_forward_image ISA_NAME(narrow_forward_image)
#define winograd_tile ISA_NAME(winograd_tile)
#define conv_winograd ISA_NAME(conv_winograd)
#define winograd_filter ISA_NAME(winograd_filter)
#define winograd_filter_grad ISA_NAME(winograd_filter_grad)
#define winograd_input ISA_NAME(winograd_input)
#define conv_im2col ISA_NAME(conv_im2col)

#endif
