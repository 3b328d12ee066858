#!/usr/bin/env bash
# jobwarden vs peers with hyperfine: `jobwarden run -- /bin/true` on the
# embedded default policy against /bin/true itself, bubblewrap and firejail.
# Installs what it needs (Debian packages hyperfine, bubblewrap, firejail);
# a peer that cannot be installed or run here is skipped, and said so.
set -uo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
    missing=()
    for pkg in hyperfine bubblewrap firejail; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq >/dev/null 2>&1
        apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || echo "note: could not install: ${missing[*]}"
    fi
fi
command -v hyperfine >/dev/null 2>&1 || { echo "hyperfine is not available; cannot run"; exit 1; }

cargo build --release --quiet --bins
jobwarden="$PWD/target/release/jobwarden"
commands=("/bin/true" "$jobwarden run --repo /tmp -- /bin/true")
if bwrap --ro-bind / / /bin/true 2>/dev/null; then
    commands+=("bwrap --ro-bind / / /bin/true")
else
    echo "skipped: bwrap is not installed or cannot run here"
fi
if firejail --quiet --noprofile /bin/true 2>/dev/null; then
    commands+=("firejail --quiet --noprofile /bin/true")
else
    echo "skipped: firejail is not installed or cannot run here"
fi
hyperfine -N --warmup 20 --runs "${RUNS:-200}" --export-markdown target/peers.md "${commands[@]}"
echo "table written to target/peers.md"
