#!/bin/sh
# Builds module.wasm from module.wat with wabt (Debian package "wabt").
set -eu
cd "$(dirname "$0")"
wat2wasm module.wat -o module.wasm
