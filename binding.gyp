{
  "targets": [
    {
      "target_name": "diffuse_native",
      "sources": ["native/addon.c", "native/dense.c", "native/conv.c", "native/conv_direct.c", "native/conv_narrow.c", "native/conv_winograd.c", "native/conv_winograd_transforms.c", "native/conv_im2col.c", "native/norms.c", "native/copy.c", "native/attention.c"],
      "include_dirs": ["/usr/include/x86_64-linux-gnu", "/usr/include/openblas"],
      "libraries": ["-lopenblas", "-fopenmp"],
      "cflags": ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp", "-std=c11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
