#!/bin/bash
# The native kernels on linux-arm64, from this x86-64 machine: built by node-gyp with Debian's cross
# compiler against arm64 OpenBLAS (multiarch), and their tests (native.test.ts) run by Debian's arm64
# Node under qemu-user. `--install` first installs what it needs where something is missing (root,
# Debian: the arm64 architecture, the cross compiler, qemu, arm64 libraries). The tests are the compiled
# dist/test: `npm run build` first. Node itself is unpacked from Debian's nodejs:arm64 packages into
# $WORK/sysroot, not installed (it would replace this machine's Node).
set -euo pipefail
PACKAGES="gcc-aarch64-linux-gnu qemu-user libopenblas-dev:arm64 libgomp1:arm64 libbrotli1:arm64 libc-ares2:arm64
  libicu72:arm64 libnghttp2-14:arm64 libssl3:arm64 libstdc++6:arm64 libuv1:arm64 zlib1g:arm64"
if [ "${1:-}" = --install ] && { ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
  [ ! -e /usr/lib/aarch64-linux-gnu/libopenblas.so ] || [ ! -e /usr/lib/aarch64-linux-gnu/libgomp.so.1 ]; }; then
  dpkg --add-architecture arm64
  # shellcheck disable=SC2086
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES >/dev/null); then
    echo "arm64-test: could not install the arm64 cross compiler, qemu and arm64 libraries ($PACKAGES)" >&2
    exit 1
  fi
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${DIFFUSE_ARM64_WORK:-${TMPDIR:-/tmp}/diffuse-arm64}
SYSROOT=$WORK/sysroot
mkdir -p "$WORK/src" "$SYSROOT"

if [ ! -x "$SYSROOT/usr/bin/node" ]; then
  (cd "$WORK" && chmod 777 . && apt-get download nodejs:arm64 libnode108:arm64 node-acorn node-cjs-module-lexer node-undici >/dev/null)
  for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
fi

# The build folder of its own: the checkout's sources, this build's own build/.
cp "$ROOT/binding.gyp" "$WORK/src/"
ln -sfn "$ROOT/native" "$WORK/src/native"
started=$(date +%s)
(cd "$WORK/src" && CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-gcc LINK=aarch64-linux-gnu-gcc AR=aarch64-linux-gnu-ar \
  PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
  node "$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js" rebuild --arch=arm64 --nodedir="${NODEDIR:-/usr}" >"$WORK/build.log" 2>&1) ||
  { tail -30 "$WORK/build.log"; exit 1; }
ADDON=$WORK/src/build/Release/diffuse_native.node
node -e "require('$ROOT/native/sources.js').writeStamp('$ADDON')"
file "$ADDON"
echo "built in $(($(date +%s) - started)) s"

started=$(date +%s)
# qemu's -L serves Node and its JS libraries from the sysroot, everything else (libraries: multiarch) from /.
DIFFUSE_NATIVE_ADDON=$ADDON qemu-aarch64 -L "$SYSROOT" "$SYSROOT/usr/bin/node" -e "const a = require('$ADDON'); console.log('arm64 addon:', process.arch, a.isa)"
# The test file run directly (node's runner would start a child Node, which only qemu can run): TAP out.
DIFFUSE_NATIVE_ADDON=$ADDON DIFFUSE_DATA_DIR=$ROOT/dist/test-data qemu-aarch64 -L "$SYSROOT" "$SYSROOT/usr/bin/node" \
  "$ROOT/dist/test/unit/backend/native.test.js" >"$WORK/tests.tap" 2>&1 || true
grep -E '^not ok|^# (tests|pass|fail|skipped)' "$WORK/tests.tap"
grep -q '^# fail 0$' "$WORK/tests.tap" && grep -q '^# skipped 0$' "$WORK/tests.tap" && ! grep -q '^# pass 0$' "$WORK/tests.tap" ||
  { echo "arm64 kernel tests failed: $WORK/tests.tap"; exit 1; }
echo "tests ran in $(($(date +%s) - started)) s under qemu"
