#!/bin/sh
# Builds module.wasm with Debian's rustc and its wasm32-wasi standard library
# (packages rustc, libstd-rust-dev-wasm32) as a cdylib: no main, the host calls
# edge_init and edge_on_message.
set -eu
case "${1:-}" in
  -h | --help) echo "usage: sh build.sh    (counter.rs -> module.wasm, in this folder)"; exit 0 ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1' (usage: sh build.sh)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
RUSTC=${RUSTC:-/usr/bin/rustc}
"$RUSTC" --edition 2021 --target wasm32-wasi --crate-type cdylib -O -C strip=symbols -o module.wasm counter.rs
