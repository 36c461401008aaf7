#!/usr/bin/env bash
# Renders a djaudit HTML report to a PNG with headless Chromium, to look at the layout.
# Not needed by the tests.
#
#   docs/screenshot.sh [REPORT.html] [OUT.png] [WIDTHxHEIGHT]
#
# Defaults: djaudit-demo/report.html (made by `cargo run --release -- demo`),
# report.png beside it, 1200x3000. A phone-sized view: `docs/screenshot.sh R.html P.png 390x2400`.
# Chinese text needs a CJK font (Debian: `apt-get install fonts-noto-cjk`); Chromium itself:
# `apt-get install chromium`.
set -euo pipefail

report="${1:-djaudit-demo/report.html}"
out="${2:-${report%.html}.png}"
size="${3:-1200x3000}"

browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then
        browser="$b"
        break
    fi
done
if [ -z "$browser" ]; then
    echo "screenshot.sh: no chromium found (apt-get install chromium)" >&2
    exit 2
fi
if [ ! -f "$report" ]; then
    echo "screenshot.sh: no report at \`$report\` (run: cargo run --release -- demo)" >&2
    exit 2
fi

abs="$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --screenshot="$out" --window-size="${size/x/,}" "file://$abs" 2>/dev/null
echo "wrote $out"
