#!/usr/bin/env bash
# LinkRun in sshell (seed §4.3.4), stateful: rank web domains by popularity.
#
#   linkrun_stateful.sh DIR [PARALLELISM] [TOP]
#
# One invocation per WAT archive DIR/*.gz (at most PARALLELISM at a time,
# default 8) extracts the outgoing links of its pages, counts the mentions
# of each domain locally, and merges this local map into a shared tree map
# in ONE atomic call (`treemap -n R merge-all -2 sum`, reading `domain count`
# lines from stdin).  The client then prints the TOP (default 100) domains,
# most mentioned first, ties by name, with the verb run from the client,
# which deletes the map once it has read it (`crucial ipc treemap -n R top
# -1 TOP --delete`: one process, no invocation); the EXIT trap deletes it
# if the script stops before.
# linkrun_stateless.sh gives the same answer, merging on the client.
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

RANK=linkrun.$$.${EPOCHREALTIME/[.,]/}
export RANK
cleanup() { crucial ipc treemap -n "$RANK" delete > /dev/null || true; }  # objects outlive the run: delete it
trap cleanup EXIT

# The remote command: links -> domains -> local counts -> one merge-all.
read -r -d '' CMD <<'SH' || true
set -euo pipefail
zcat -q "$F" 2>/dev/null \
  | grep -o '"url":"https\?://[^/":?#]*' | cut -d/ -f3 | tr '[:upper:]' '[:lower:]' \
  | LC_ALL=C sort | uniq -c | awk '{ print $2, $1 }' \
  | treemap -n "$RANK" merge-all -2 sum
SH
export CMD

job() { sshell -e "F=$1" -e "RANK=$RANK" "$CMD"; }
export -f job

printf '%s\0' "${archives[@]}" | xargs -0 -n 1 -P "$P" bash -c 'job "$1"' job
crucial ipc treemap -n "$RANK" top -1 "$TOP" --delete
trap - EXIT  # deleted
