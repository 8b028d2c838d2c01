#!/bin/sh
# Runs the TUF conformance suite (github.com/theupdateframework/tuf-conformance)
# against `edged tuf-client`.
#
# Usage: scripts/tuf-conformance/run.sh SUITE_DIR [PYTHONPATH_EXTRA] [pytest args...]
#
#   SUITE_DIR         a checkout of tuf-conformance (not fetched by this script)
#   PYTHONPATH_EXTRA  a directory holding the suite's Python dependencies `tuf`
#                     and `securesystemslib` if they are not installed ("" if they are)
#
# Needs python3 with pytest and cryptography, and faketime (Debian: faketime).
# Expected result: all tests pass (no xfails file).
set -eu
usage="usage: $0 SUITE_DIR [PYTHONPATH_EXTRA] [pytest args...]"
case "${1:-}" in
  -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "$0: unknown option '$1'" >&2; echo "$usage" >&2; exit 2 ;;
esac
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
suite=$(cd "$1" && pwd)
shift
extra=""
if [ $# -ge 1 ]; then extra=$1; shift; fi
here=$(cd "$(dirname "$0")/../.." && pwd)
entry=$(mktemp -d)/edged-tuf-client
cat >"$entry" <<EOS
#!/bin/sh
exec deno run --allow-all --quiet "$here/app/tuf_client_main.ts" "\$@"
EOS
chmod +x "$entry"
command -v faketime >/dev/null || { echo "$0: faketime is required (apt-get install faketime)" >&2; exit 2; }
cd "$suite"
PYTHONPATH="${extra:+$extra:}$suite${PYTHONPATH:+:$PYTHONPATH}" \
  exec python3 -m pytest -p no:cacheprovider tuf_conformance --entrypoint "$entry" "$@"
