#!/usr/bin/env bash
# The seed's Figure 10: JOBS invocations meet on a barrier.
#
#   gathering.sh DIR [JOBS]
#
# JOBS invocations (default 4) split the archives DIR/*.gz between them.
# Phase 1: each sums the Content-Length headers of its share into two shared
# counters, then awaits the barrier (`barrier -n B -p JOBS await`).  When all
# JOBS have arrived, the counters hold the whole crawl's totals, so phase 2
# can use them: each reads the global average and counts the pages of its
# share that are larger than it, into a third counter, and counts a latch
# down.  As in the figure, JOBS-1 invocations are started with
# `sshell --async` (their output is dropped) and the last one synchronously;
# that one awaits the latch and prints
#
#   AVERAGE LARGER PAGES
#
# (the average page size, how many pages are larger, out of how many).
# An invocation that fails in phase 1 (a corrupt archive) still arrives at
# the barrier, after counting itself in a `failed` counter: all then exit 1
# instead of waiting forever.  An invocation lost altogether, or failing in
# phase 2, would leave the others waiting: the last invocation is bounded by
# --timeout (TIMEOUT seconds, default 300).
set -euo pipefail

if (( $# < 1 || $# > 2 )); then
    echo "usage: $0 DIR [JOBS]" >&2
    exit 2
fi
DIR=$(cd "$1" && pwd)
shopt -s nullglob
archives=("$DIR"/*.gz)
(( ${#archives[@]} > 0 )) || { echo "$0: no *.gz archive in $DIR" >&2; exit 1; }
JOBS=${2:-4}
TIMEOUT=${TIMEOUT:-300}
(( JOBS >= 1 )) || { echo "$0: JOBS must be at least 1" >&2; exit 2; }

RUN=gathering.$$.$(date +%s%N)
cleanup() {  # objects outlive the run: delete them (an --async invocation still waiting gets an error)
    sshell "for c in sum count larger failed; do counter -n $RUN.\$c delete; done; barrier -n $RUN.barrier delete; latch -n $RUN.done delete" \
        > /dev/null || true
}
trap cleanup EXIT

read -r -d '' CMD <<'SH' || true
set -euo pipefail
# A failure in phase 1 must not leave the others waiting for this party:
# count it, arrive at the barrier anyway, and let everyone see the count.
failed() {
    counter -n "$RUN.failed" increment > /dev/null
    barrier -n "$RUN.barrier" -p "$JOBS" await > /dev/null
    exit 1
}
trap failed ERR
# phase 1: gather this share's sizes and add them to the totals
mapfile -t files <<< "$FILES"
sizes=
if [[ -n $FILES ]]; then
    sizes=$(zcat -q "${files[@]}" 2>/dev/null | awk '/^Content-Length/ { printf "%.0f\n", $2 }')
fi
read -r sum count < <(printf '%s\n' "$sizes" | awk 'NF { s += $1; n++ } END { printf "%.0f %d\n", s, n }')
counter -n "$RUN.sum" increment -1 "$sum" > /dev/null
counter -n "$RUN.count" increment -1 "$count" > /dev/null
trap - ERR
barrier -n "$RUN.barrier" -p "$JOBS" await > /dev/null
failures=$(counter -n "$RUN.failed" tally)
if (( failures > 0 )); then
    echo "gathering: $failures invocation(s) failed in phase 1" >&2
    exit 1
fi
# phase 2: every share is in the totals
total=$(counter -n "$RUN.count" tally)
average=$(( total > 0 ? $(counter -n "$RUN.sum" tally) / total : 0 ))
larger=$(printf '%s\n' "$sizes" | awk -v a="$average" 'NF && $1 > a { n++ } END { print n + 0 }')
counter -n "$RUN.larger" increment -1 "$larger" > /dev/null
latch -n "$RUN.done" -c "$JOBS" count-down > /dev/null
if [[ $LAST == 1 ]]; then
    latch -n "$RUN.done" -c "$JOBS" await
    echo "$average $(counter -n "$RUN.larger" tally) $total"
fi
SH

# Job j gets archives j, j+JOBS, j+2*JOBS ... (newline-separated in $FILES).
share() {
    local i
    for (( i = $1; i < ${#archives[@]}; i += JOBS )); do
        printf '%s\n' "${archives[i]}"
    done
}

for (( j = 0; j < JOBS - 1; j++ )); do
    sshell --async -e "FILES=$(share "$j")" -e "RUN=$RUN" -e "JOBS=$JOBS" -e LAST=0 "$CMD" > /dev/null
done
sshell --timeout "$TIMEOUT" -e "FILES=$(share $((JOBS - 1)))" -e "RUN=$RUN" -e "JOBS=$JOBS" -e LAST=1 "$CMD"
