#!/bin/sh
# Builds module.wasm with clang and wasi-libc (Debian: clang, lld, wasi-libc,
# libclang-rt-14-dev-wasm32) as a WASI reactor: no main, _initialize runs
# the C constructors, the host then calls edge_init and edge_on_message.
set -eu
case "${1:-}" in
  -h | --help) echo "usage: sh build.sh    (level.c -> module.wasm, in this folder)"; exit 0 ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1' (usage: sh build.sh)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
clang --target=wasm32-wasi -O2 -mexec-model=reactor \
  -Wl,--strip-all -Wl,-z,stack-size=65536 \
  -o module.wasm level.c
