#!/bin/sh
# Builds module.wasm with Debian's rustc and its wasm32-wasi standard library
# (packages rustc, libstd-rust-dev-wasm32) as a cdylib: no main, the host calls
# edge_init and edge_on_message.
set -eu
cd "$(dirname "$0")"
RUSTC=${RUSTC:-/usr/bin/rustc}
"$RUSTC" --edition 2021 --target wasm32-wasi --crate-type cdylib -O -C strip=symbols -o module.wasm counter.rs
