#!/usr/bin/env bash
# Builds real libmraa for its MOCK platform (a simulated board, no hardware)
# so the mraa backend can be tested anywhere. The C sources come from the npm
# package `mraa`, which ships the whole libmraa tree.
#
# Output: .build/libmraa-mock/lib/libmraa.so (git-ignored). Idempotent: does
# nothing if that library is already built for MRAA_VERSION. Installs cmake
# (and a C toolchain) with apt-get only if missing; needs root for that.
# Prints the path of libmraa.so as its last line.
set -euo pipefail

# Pinned: the build flags below (-fcommon) are known to work with this release.
MRAA_VERSION=1.9.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/.build/libmraa-mock"
LIB="$OUT/lib/libmraa.so"
STAMP="$OUT/VERSION"

if [[ -e "$LIB" && -f "$STAMP" && "$(cat "$STAMP")" == "$MRAA_VERSION" ]]; then
  echo "build-libmraa-mock: already built (libmraa $MRAA_VERSION, MOCK)" >&2
  echo "$LIB"
  exit 0
fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
{ command -v cc >/dev/null && command -v make >/dev/null; } || missing+=(build-essential)
command -v npm >/dev/null || { echo "build-libmraa-mock: npm is required" >&2; exit 1; }
if ((${#missing[@]})); then
  echo "build-libmraa-mock: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

(cd "$WORK" && npm pack --silent "mraa@$MRAA_VERSION" >/dev/null)
tar -xzf "$WORK"/mraa-"$MRAA_VERSION".tgz -C "$WORK"
SRC="$WORK/mraa" # this tarball's top folder is mraa/, not package/
[[ -f "$SRC/CMakeLists.txt" && -d "$SRC/src/mock" ]] || { echo "build-libmraa-mock: unexpected tarball layout" >&2; exit 1; }

# BUILDARCH=MOCK selects the mock platform (src/mock). Everything optional is
# off: bindings (swig python/node/java), docs, tests, examples, tools, and
# JSON/USB/Firmata/FTDI sub-platforms (which would need extra libraries).
# -fcommon: libmraa 1.9 defines gVERSION in two files, which GCC >= 10
# (default -fno-common) refuses to link.
cmake -S "$SRC" -B "$WORK/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS=-fcommon \
  -DBUILDARCH=MOCK \
  -DBUILDSWIG=OFF -DBUILDSWIGPYTHON=OFF -DBUILDSWIGNODE=OFF -DBUILDSWIGJAVA=OFF \
  -DBUILDDOC=OFF -DBUILDTESTS=OFF -DENABLEEXAMPLES=OFF -DINSTALLTOOLS=OFF \
  -DJSONPLAT=OFF -DIMRAA=OFF -DUSBPLAT=OFF -DFIRMATA=OFF -DFTDI4222=OFF \
  >"$WORK/cmake.log" 2>&1 || { cat "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target mraa -j "$(nproc)" \
  >"$WORK/make.log" 2>&1 || { tail -n 40 "$WORK/make.log" >&2; exit 1; }

# Swap in the new lib/ in one step so a half-copied tree is never seen as built.
mkdir -p "$OUT"
rm -rf "$OUT/lib.new"
mkdir "$OUT/lib.new"
cp -P "$WORK"/build/src/libmraa.so* "$OUT/lib.new/"
rm -rf "$OUT/lib"
mv "$OUT/lib.new" "$OUT/lib"
echo "$MRAA_VERSION" >"$STAMP"

echo "build-libmraa-mock: built libmraa $MRAA_VERSION (MOCK) in $((SECONDS - start)) s" >&2
echo "$LIB"
