#!/usr/bin/env bash
# LinkRun in sshell (seed §4.3.4), stateless: rank web domains by popularity.
#
#   linkrun_stateless.sh DIR [PARALLELISM] [TOP]
#
# As linkrun_stateful.sh, but each invocation prints its local counts
# (`domain count` lines) and the client merges them with awk and sorts them
# (most mentioned first, ties by name in byte order, as `treemap … top`
# orders them), keeping the TOP (default 100).  The seed measured this
# client-side merge 13.8x slower than the shared tree map at full scale.
set -euo pipefail

if (( $# < 1 || $# > 3 )); then
    echo "usage: $0 DIR [PARALLELISM] [TOP]" >&2
    exit 2
fi
DIR=$(cd "$1" && pwd)
shopt -s nullglob
archives=("$DIR"/*.gz)
(( ${#archives[@]} > 0 )) || { echo "$0: no *.gz archive in $DIR" >&2; exit 1; }
P=${2:-8}
TOP=${3:-100}

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OUT

read -r -d '' CMD <<'SH' || true
set -euo pipefail
zcat -q "$F" 2>/dev/null \
  | grep -o '"url":"https\?://[^/":?#]*' | cut -d/ -f3 | tr '[:upper:]' '[:lower:]' \
  | LC_ALL=C sort | uniq -c | awk '{ print $2, $1 }'
SH
export CMD

# Each invocation's output to its own file: concurrent sshells writing to
# one pipe could interleave their lines.
job() { sshell -e "F=$1" "$CMD" > "$OUT/${1##*/}"; }
export -f job

printf '%s\0' "${archives[@]}" | xargs -0 -n 1 -P "$P" bash -c 'job "$1"' job
cat "$OUT"/* \
  | awk '{ n[$1] += $2 } END { for (d in n) printf "%s %.0f\n", d, n[d] }' \
  | LC_ALL=C sort -k2,2nr -k1,1 | awk -v top="$TOP" 'NR <= top'   # not head: sort would die of SIGPIPE
