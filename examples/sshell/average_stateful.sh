#!/usr/bin/env bash
# The seed's Figure 11: the average of Figure 9, computed in a stateful way.
#
#   average_stateful.sh DIR [PARALLELISM]
#
# Each invocation (one per archive DIR/*.gz, at most PARALLELISM at a time,
# default 8) sums the Content-Length headers of its archive and adds its sum
# and its count to two shared counters; the client reads the two tallies and
# divides.  (Figure 11 adds each archive's own average to one counter and
# divides by the number of archives, an average of averages; two counters
# give the exact average, the same answer as average.sh.)
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

# Names unique to this run: concurrent runs on one DSO do not meet.
RUN=average.$$.$(date +%s%N)
export RUN

# Objects live as long as the DSO node: delete them when done.
cleanup() { sshell "counter -n $RUN.sum delete; counter -n $RUN.count delete" > /dev/null || true; }
trap cleanup EXIT

# The remote command: local sum and count, then one increment of each counter.
read -r -d '' CMD <<'SH' || true
set -euo pipefail
read -r sum count < <(zcat -q "$F" 2>/dev/null | grep ^Content-Length | awk '{ s += $2 } END { printf "%.0f %d\n", s, NR }')
counter -n "$RUN.sum" increment -1 "$sum" > /dev/null
counter -n "$RUN.count" increment -1 "$count" > /dev/null
SH
export CMD

job() { sshell -e "F=$1" -e "RUN=$RUN" "$CMD"; }
export -f job

printf '%s\0' "${archives[@]}" | xargs -0 -n 1 -P "$P" bash -c 'job "$1"' job

read -r sum count < <(sshell "echo \$(counter -n $RUN.sum tally) \$(counter -n $RUN.count tally)")
if (( count > 0 )); then
    echo $(( sum / count ))
fi
