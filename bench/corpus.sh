#!/usr/bin/env bash
# Fetch the long real PDFs the benchmarks use from Debian's packages into bench/out/ (not committed):
# octave.pdf (octave-doc, 1,158 pages), refman.pdf (r-doc-pdf, 2,415 pages) and R's other manuals (R-exts, R-admin,
# R-ints, R-lang, R-FAQ).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p out && cd out
[ -f octave.pdf ] && [ -f refman.pdf ] && [ -f R-exts.pdf ] && exit 0
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download octave-doc r-doc-pdf >/dev/null 2>&1 || { apt-get update -qq && apt-get download octave-doc r-doc-pdf; })
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
cp "$(find "$tmp/x" -name octave.pdf -type f | head -1)" octave.pdf
cp "$(find "$tmp/x" -name refman.pdf -type f | head -1)" refman.pdf
for m in R-exts R-admin R-ints R-lang R-FAQ; do cp "$(find "$tmp/x" -name "$m.pdf" -type f | head -1)" "$m.pdf"; done
rm -rf "$tmp"
ls -la octave.pdf refman.pdf R-exts.pdf R-admin.pdf R-ints.pdf R-lang.pdf R-FAQ.pdf
