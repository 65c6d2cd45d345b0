#!/bin/sh
# Render an analysis report (mohge analyze → report.html) with headless Chromium, for a look at the
# charts without a browser: writes OUT_PREFIX_0.png, _1.png, … (1200 px wide, SEGMENT px tall each,
# the page cut into consecutive segments) and prints how many <svg class="chart"> the DOM holds.
# usage: tools/render_check.sh REPORT.html [OUT_PREFIX=/tmp/report] [SEGMENTS=4] [SEGMENT=3000]
# Needs the Debian package `chromium` (apt-get install chromium).
set -eu
report=${1:?usage: tools/render_check.sh REPORT.html [OUT_PREFIX] [SEGMENTS] [SEGMENT_HEIGHT]}
prefix=${2:-/tmp/report}
segments=${3:-4}
seg=${4:-3000}
command -v chromium >/dev/null || { echo "chromium not installed (apt-get install chromium)" >&2; exit 1; }
[ -f "$report" ] || { echo "no such file: $report" >&2; exit 1; }
report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chrome() { timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "$@" 2>/dev/null; }

n=$(chrome --dump-dom "file://$report" | grep -o '<svg class="chart"' | wc -l)
echo "charts in the rendered DOM: $n"
i=0
while [ "$i" -lt "$segments" ]; do
  # the same page shifted up by i segments (a copy beside the original, so relative paths still work)
  copy="$tmp/seg$i.html"
  sed "s|</style>|body { margin-top: -$((i * seg))px !important; }</style>|" "$report" >"$copy"
  chrome --screenshot="${prefix}_$i.png" --window-size=1200,"$seg" "file://$copy" >/dev/null
  echo "${prefix}_$i.png"
  i=$((i + 1))
done
