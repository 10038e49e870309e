#!/bin/sh
# Make sure Node.js (>= 18) and npm are here for the JavaScript client's tests, from Debian's packages where
# they are missing; then install the client's dependencies from its lock file. onnxruntime-node's install
# script must not fetch CUDA binaries (ONNXRUNTIME_NODE_INSTALL_CUDA=skip): the CPU build ships in the package.
set -eu
cd "$(dirname "$0")"
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 18 ] || ! command -v npm >/dev/null 2>&1; then
    echo "ensure-node: installing Debian's nodejs and npm" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d node_modules/onnxruntime-node ]; then
    ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund --loglevel=error
fi
