#!/usr/bin/env bash
# Keeps a study's records inside the repository while it runs in a workdir outside it, so that a
# lost machine loses at most one interval of one run:
#
#   nohup bash experiments/keep_records.sh WORKDIR RESULTS [SECONDS] &     (default: 300)
#
# (SECONDS 0: once, then exit.)
# Every SECONDS, for each run folder of WORKDIR (a `lease-search` workdir): a finished one
# (`summary.json` says so) gets its summary.json, config.json and history.jsonl copied once into
# RESULTS/finished/<run>/ (what the study drivers need to skip it in a fresh checkout); a started,
# unfinished one is mirrored into RESULTS/unfinished/<run>/ with its latest checkpoint only and
# without its `.lock` (to resume from it: copy the folder back into WORKDIR). Each mirror is
# written beside the old one and swapped in, so an interrupted copy leaves the previous one.
# It reads WORKDIR only; commit RESULTS by hand.
set -euo pipefail
workdir="${1:?usage: keep_records.sh WORKDIR RESULTS [SECONDS]}"
results="${2:?usage: keep_records.sh WORKDIR RESULTS [SECONDS]}"
interval="${3:-300}"
[[ -d "$workdir" ]] || { echo "keep_records.sh: WORKDIR $workdir is not a folder" >&2; exit 2; }

is_finished() {
  python -c "import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get('finished') else 1)" \
    "$1/summary.json" 2>/dev/null
}

keep_once() {
  local run name latest mirror
  for run in "$workdir"/*/; do
    run="${run%/}"; name="$(basename "$run")"
    [[ -f "$run/config.json" ]] || continue
    if is_finished "$run"; then
      if [[ ! -f "$results/finished/$name/summary.json" ]]; then
        mkdir -p "$results/finished/$name.tmp"
        cp "$run/summary.json" "$run/config.json" "$run/history.jsonl" "$results/finished/$name.tmp/"
        rm -rf "$results/finished/$name" "$results/unfinished/$name"
        mv "$results/finished/$name.tmp" "$results/finished/$name"
        echo "$(date -u '+%F %T') $name: finished, kept in $results/finished/$name"
      fi
      continue
    fi
    mirror="$results/unfinished/$name"
    rm -rf "$mirror.tmp"; mkdir -p "$mirror.tmp/checkpoints"
    find "$run" -maxdepth 1 -type f ! -name .lock -exec cp {} "$mirror.tmp/" \;
    [[ -d "$run/plots" ]] && cp -r "$run/plots" "$mirror.tmp/"
    latest="$(find "$run/checkpoints" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' \
                -printf '%f\n' 2>/dev/null | sort -n | tail -1 || true)"  # none yet: ''
    [[ -n "$latest" ]] && cp -r "$run/checkpoints/$latest" "$mirror.tmp/checkpoints/"
    rm -rf "$mirror"; mv "$mirror.tmp" "$mirror"
  done
}

while true; do
  keep_once
  [[ "$interval" == 0 ]] && exit 0
  sleep "$interval"
done
