#!/bin/sh
# Builds module.wasm with clang and wasi-libc (Debian: clang, lld, wasi-libc,
# libclang-rt-14-dev-wasm32) as a WASI reactor, and writes the example model
# window-scorer.onnx from its generator (scripts/nn/models.ts, needs deno).
set -eu
case "${1:-}" in
  -h | --help) echo "usage: sh build.sh    (score.c -> module.wasm, and window-scorer.onnx, in this folder)"; exit 0 ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1' (usage: sh build.sh)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -mexec-model=reactor \
  -Wl,--strip-all -Wl,-z,stack-size=65536 \
  -o module.wasm score.c
deno run --allow-write=. ../../../scripts/nn/make_model.ts window-scorer window-scorer.onnx
