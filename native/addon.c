/*
 * The addon's entry point: the process-wide float and allocator settings, and the kernels by name.
 */
#include "kernels.h"

/*
 * Subnormal floats (below 1.2e-38) take the slow path of the FPU, 10-100x per operation. Training makes
 * them: GELU of a large negative input and its gradient underflow, and a 1e-3 learning rate pushes
 * inputs there, which made steps 6x slower. Flush them to zero on this thread and in the threads it
 * starts from now on (OpenMP's, OpenBLAS's), which inherit the setting. (JS on this thread sees it too:
 * float arithmetic below 1e-308 flushes to zero, which nothing in diffuse relies on.)
 */
extern int blas_thread_shutdown_(void) __attribute__((weak)); /* OpenBLAS's pthreads build has it */

static void flush_subnormals(void) {
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
  /* OpenBLAS started its worker threads when it loaded, before this: stop them, and its next product
     starts new ones from this thread, with its setting (the path OpenBLAS takes after a fork). */
  if (blas_thread_shutdown_) blas_thread_shutdown_();
}

/*
 * setThreads(n): the OpenMP team size of the calling thread's kernels and OpenBLAS's thread count
 * (process-wide); returns the calling thread's previous team size. Data-parallel training runs one
 * kernel thread per JS thread, each on its share of the batch.
 */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  ARGS(1);
  const int n = (int)num(env, argv[0]);
  const int before = omp_get_max_threads();
  if (n >= 1) {
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
  }
  napi_value out;
  CHECK(napi_create_int32(env, before, &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  flush_subnormals();
  /*
   * Keep freed tensor buffers (up to 32 MiB each) in malloc's heap instead of returning them to the
   * system: otherwise every training step maps fresh pages for its tensors and pays a page fault per 4 KiB.
   */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  napi_property_descriptor props[] = {
      {"sgemm", NULL, sgemm, NULL, NULL, NULL, napi_default, NULL},
      {"adam", NULL, adam, NULL, NULL, NULL, napi_default, NULL},
      {"lerp", NULL, lerp, NULL, NULL, NULL, napi_default, NULL},
      {"geluLayerNorm", NULL, gelu_layer_norm, NULL, NULL, NULL, napi_default, NULL},
      {"geluLayerNormGrad", NULL, gelu_layer_norm_grad, NULL, NULL, NULL, napi_default, NULL},
      {"columnSums", NULL, column_sums, NULL, NULL, NULL, napi_default, NULL},
      {"binary", NULL, binary, NULL, NULL, NULL, napi_default, NULL},
      {"conv", NULL, conv, NULL, NULL, NULL, napi_default, NULL},
      {"groupNorm", NULL, group_norm, NULL, NULL, NULL, napi_default, NULL},
      {"silu", NULL, silu, NULL, NULL, NULL, napi_default, NULL},
      {"siluGrad", NULL, silu_grad, NULL, NULL, NULL, napi_default, NULL},
      {"groupNormGrad", NULL, group_norm_grad, NULL, NULL, NULL, napi_default, NULL},
      {"middleSums", NULL, middle_sums, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxRows", NULL, softmax_rows, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxRowsGrad", NULL, softmax_rows_grad, NULL, NULL, NULL, napi_default, NULL},
      {"copyRuns", NULL, copy_runs, NULL, NULL, NULL, napi_default, NULL},
      {"upsample2x", NULL, upsample2x, NULL, NULL, NULL, napi_default, NULL},
      {"upsample2xGrad", NULL, upsample2x_grad, NULL, NULL, NULL, napi_default, NULL},
      {"attention", NULL, attention, NULL, NULL, NULL, napi_default, NULL},
      {"attentionGrad", NULL, attention_grad, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
