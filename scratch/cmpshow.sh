#!/bin/bash
# compares fpd config show --json / --wire for every preset with the baseline
cd "$(dirname "$0")/.."
bad=0
for f in /work/baseline/show/*.json; do
  b=$(basename $f .json); p=$(node -e "const m=require('/work/baseline/names.json'); console.log(m['$b'])")
  node bin/run.js config show $p --json > /tmp/cmp.json; cmp -s /tmp/cmp.json $f || { echo "DIFF json $p"; bad=1; }
  node bin/run.js config show $p --wire > /tmp/cmp.wire 2>&1; cmp -s /tmp/cmp.wire /work/baseline/show/$b.wire || { echo "DIFF wire $p"; bad=1; }
done
echo "compare done bad=$bad"
