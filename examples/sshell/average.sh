#!/usr/bin/env bash
# The seed's Figure 9: the average size of a web page in a crawl.
#
#   average.sh DIR [PARALLELISM]
#
# For each archive DIR/*.gz, one sshell invocation (at most PARALLELISM at a
# time, default 8) decompresses it and greps the Content-Length headers; the
# client averages the sizes with awk.  The archives are read where they are:
# local workers see this machine's files, as Lambda functions see EFS (with
# Lithops, put DIR on a shared file system or fetch the archive from S3 in
# the command, as docs/sshell.md explains).
#
# Each invocation's output goes to its own file before awk reads them all:
# several sshells writing to one pipe at once could interleave their lines.
set -euo pipefail

if (( $# < 1 || $# > 2 )); then
    echo "usage: $0 DIR [PARALLELISM]" >&2
    exit 2
fi
DIR=$(cd "$1" && pwd)
shopt -s nullglob
archives=("$DIR"/*.gz)
(( ${#archives[@]} > 0 )) || { echo "$0: no *.gz archive in $DIR" >&2; exit 1; }
P=${2:-8}

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OUT

# One invocation: the command runs remotely, with the archive's path in $F.
job() {
    sshell -e "F=$1" 'zcat -q "$F" 2>/dev/null | grep ^Content-Length' > "$OUT/${1##*/}"
}
export -f job

printf '%s\0' "${archives[@]}" | xargs -0 -n 1 -P "$P" bash -c 'job "$1"' job
cat "$OUT"/* | awk '{ sum += $2 } END { if (NR > 0) printf "%.0f\n", int(sum / NR) }'
