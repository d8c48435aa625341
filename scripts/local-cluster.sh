#!/usr/bin/env bash
# Starts a 3-member synod cluster on this machine and waits; Ctrl-C stops
# it. Clients: 127.0.0.1:2379, 127.0.0.1:22379, 127.0.0.1:32379.
# Data goes to ./local-cluster/<name>.etcd (delete it to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin local-cluster
go build -o bin/synod ./cmd/synod
go build -o bin/synodctl ./cmd/synodctl

cluster="infra1=http://127.0.0.1:2380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
start() { # name client-port peer-port
	bin/synod --name "$1" --data-dir "local-cluster/$1.etcd" \
		--listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
		--listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
		--initial-cluster-token local-cluster --initial-cluster "$cluster" \
		--initial-cluster-state new --logger text >"local-cluster/$1.log" 2>&1 &
	pids+=($!)
}
start infra1 2379 2380
start infra2 22379 22380
start infra3 32379 32380
echo "synod cluster running (logs in local-cluster/*.log); try:"
echo "  bin/synodctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 member list -w table"
wait
