#!/usr/bin/env bash
# Runs the synod-vs-etcd raft benchmarks of this module and prints them side
# by side with benchstat (a tool of this module, see go.mod).
#
#   ./run.sh                      # -count 5, default -benchtime (1s)
#   COUNT=3 ./run.sh -benchtime 20000x
#
# Extra arguments go to `go test`. The raw results are kept in $OUT
# (default: a temporary file, whose name is printed at the end).
set -euo pipefail
cd "$(dirname "$0")"
count=${COUNT:-5}
out=${OUT:-$(mktemp -t raftcmp.XXXXXX)}
go test -run '^$' -bench . -benchmem -count "$count" "$@" | tee "$out"
echo
# One column per implementation, etcd first: benchstat then shows synod's
# change relative to etcd (+ = synod's number is higher).
go tool benchstat -col '/impl@(etcd synod)' "$out"
echo
echo "raw results: $out"
