#!/bin/sh
# Builds module.wasm with the AssemblyScript compiler pinned in package.json
# (npm install first). The stub runtime never frees, which suits a module whose
# per-message garbage is small; "--use abort=" drops the env.abort import, so an
# assertion failure is a plain trap that edged counts as a fault.
set -eu
case "${1:-}" in
  -h | --help) echo "usage: sh build.sh    (assembly/index.ts -> module.wasm, in this folder)"; exit 0 ;;
  "") ;;
  *) echo "build.sh: unknown argument '$1' (usage: sh build.sh)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"
[ -d node_modules/assemblyscript ] || npm install --no-audit --no-fund
npx asc assembly/index.ts -o module.wasm -O3 --runtime stub --use abort= --initialMemory 1
