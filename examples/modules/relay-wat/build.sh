#!/bin/sh
# Builds module.wasm from module.wat with wabt's wat2wasm: Debian's (package
# "wabt") when it is installed, else the same release, wabt 1.0.32, from npm
# (byte-identical output for this module; npm's build fails only on WAT nested
# some 150 levels deep, its stack is small).
set -eu
case "${1:-}" in
  -h | --help) echo "usage: sh build.sh    (module.wat -> module.wasm, in this folder)"; exit 0 ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1' (usage: sh build.sh)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
if command -v wat2wasm >/dev/null; then
  wat2wasm module.wat -o module.wasm
else
  npx --yes -p wabt@1.0.32 wat2wasm module.wat -o module.wasm
fi
