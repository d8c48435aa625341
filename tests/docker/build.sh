#!/usr/bin/env bash
# Builds the FROM scratch synod image locally: a static binary
# (CGO_ENABLED=0) and tests/docker/Dockerfile. No registry is used.
# Usage: tests/docker/build.sh [tag]   (default tag: synod:local)
set -euo pipefail
tag="${1:-synod:local}"
cd "$(dirname "$0")/../.."
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$ctx/synod" ./cmd/synod
cp tests/docker/Dockerfile "$ctx/"
docker build -q -t "$tag" "$ctx"
echo "built $tag"
