# The native kernels (build/Release/diffuse_native.node): addon.c, compiled once, and the kernel files,
# compiled per instruction set into static libraries that addon.c chooses from at load time
# (native/isa.h). Linux is built and tested (x86-64, and arm64 by scripts/arm64-test.sh); the macOS
# and Windows conditions follow those platforms' documentation and are untested.
{
  "variables": {
    "kernel_sources": [
      "native/table.c", "native/dense.c", "native/conv.c", "native/conv_direct.c", "native/conv_narrow.c",
      "native/conv_winograd.c", "native/conv_winograd_transforms.c", "native/conv_im2col.c", "native/norms.c",
      "native/copy.c", "native/attention.c"
    ],
    "common_cflags": ["-O3", "-ffast-math", "-fno-finite-math-only", "-Wno-unknown-pragmas"]
  },
  "target_defaults": {
    "defines": ["NAPI_VERSION=8"],
    "conditions": [
      ["OS=='linux' or OS=='freebsd'", {
        "include_dirs": ["<!@(node native/cblas.js cflags)"],
        "cflags": ["<@(common_cflags)", "-std=c11", "-fPIC", "-fopenmp", "-fvisibility=hidden"]
      }],
      # Apple's clang has no OpenMP: the kernels run on their calling thread (native/kernels.h).
      ["OS=='mac'", {
        "xcode_settings": {
          "OTHER_CFLAGS": ["<@(common_cflags)", "-std=c11"],
          "MACOSX_DEPLOYMENT_TARGET": "11.0"
        }
      }],
      # GCC's vector extensions need clang-cl; OpenBLAS from OPENBLAS_DIR (e.g. vcpkg's or the release zip).
      ["OS=='win'", {
        "msbuild_toolset": "ClangCL",
        "include_dirs": ["<!(node -p \"(process.env.OPENBLAS_DIR || 'C:/OpenBLAS') + '/include'\")"],
        "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["/O2", "-ffast-math", "-fno-finite-math-only"] } }
      }]
    ]
  },
  "targets": [
    {
      "target_name": "diffuse_native",
      "sources": ["native/addon.c"],
      "conditions": [
        ["target_arch=='x64'", {
          "dependencies": ["kernels_avx512", "kernels_avx2", "kernels_generic"],
          "defines": ["DIFFUSE_X86_SETS"]
        }, {
          "dependencies": ["kernels_generic"]
        }],
        ["OS=='linux' or OS=='freebsd'", { "libraries": ["<!@(node native/cblas.js libs)", "-fopenmp"] }],
        ["OS=='mac'", { "libraries": ["-framework Accelerate"] }],
        ["OS=='win'", { "libraries": ["<!(node -p \"(process.env.OPENBLAS_DIR || 'C:/OpenBLAS') + '/lib/openblas.lib'\")"] }]
      ]
    },
    {
      "target_name": "kernels_generic",
      "type": "static_library",
      "sources": ["<@(kernel_sources)"],
      "defines": ["ISA=_generic"],
      "conditions": [
        ["target_arch=='x64'", {
          "cflags": ["-march=x86-64", "-mtune=generic"],
          "xcode_settings": { "OTHER_CFLAGS": ["-march=x86-64", "-mtune=generic"] }
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "kernels_avx2",
          "type": "static_library",
          "sources": ["<@(kernel_sources)"],
          "defines": ["ISA=_avx2"],
          "cflags": ["-march=x86-64-v3", "-mtune=generic"],
          "xcode_settings": { "OTHER_CFLAGS": ["-march=x86-64-v3", "-mtune=generic"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["-march=x86-64-v3"] } }
        },
        {
          "target_name": "kernels_avx512",
          "type": "static_library",
          "sources": ["<@(kernel_sources)"],
          "defines": ["ISA=_avx512"],
          "cflags": ["-march=x86-64-v4", "-mtune=generic"],
          "xcode_settings": { "OTHER_CFLAGS": ["-march=x86-64-v4", "-mtune=generic"] },
          "msvs_settings": { "VCCLCompilerTool": { "AdditionalOptions": ["-march=x86-64-v4"] } }
        }
      ]
    }]
  ]
}
