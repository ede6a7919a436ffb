#!/usr/bin/env bash
# Screenshots of built pages in a real browser (headless Chromium, no network), to look at
# how the site reads.  Build the site first (README.md: "Documentation"), then
#     bash docs/screenshot.sh [OUT_DIR] [PAGE ...]
# PAGE is a path under docs/_build/html (default: the index, a tutorial, an API page).
# Debian: apt-get install -y chromium.  Writes OUT_DIR/<page name>.png (default /tmp/nnx-shots).
set -euo pipefail
cd "$(dirname "$0")"
OUT=${1:-/tmp/nnx-shots}
shift || true
PAGES=("$@")
[ ${#PAGES[@]} -gt 0 ] || PAGES=(index.html auto_tutorials/t01_mini_batch_loop.html api/generated/nnx.Linear.html)
BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$BROWSER" ] || { echo "screenshot: no chromium found (apt-get install -y chromium)" >&2; exit 1; }
mkdir -p "$OUT"
for page in "${PAGES[@]}"; do
    file="$PWD/_build/html/$page"
    [ -f "$file" ] || { echo "screenshot: $file is missing: build the site first" >&2; exit 1; }
    profile=$(mktemp -d)
    png="$OUT/$(echo "${page%.html}" | tr / _).png"
    "$BROWSER" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars --window-size=1280,${HEIGHT:-2000} \
        --virtual-time-budget=5000 --screenshot="$png" "file://$file" 2>/dev/null
    rm -rf "$profile"
    echo "$png"
done
