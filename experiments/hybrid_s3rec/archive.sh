#!/usr/bin/env bash
# Keep the result files of every finished run in OUT (run folders do not outlive a machine): config.yaml, run.json,
# metrics.json and pop_adjust.json (when swept) of OUT/<dataset>/<setting>/<run>/ are copied to
# DEST/<dataset>/<setting>/<run>/ (weights are not: rerun the command in config.yaml to get them back). A file
# already archived is left as it is unless its content differs, which is an error (nothing is overwritten).
#   OUT=runs/hybrid-s3rec DEST=benchmarks/results/i33_r2 bash experiments/hybrid_s3rec/archive.sh
set -euo pipefail
out=${OUT:-runs/hybrid-s3rec}
dest=${DEST:-benchmarks/results/i33_r2}
n=0
while read -r m; do
  run=$(dirname "$m"); rel=${run#"$out"/}
  mkdir -p "$dest/$rel"
  for f in config.yaml run.json metrics.json pop_adjust.json; do
    [ -f "$run/$f" ] || continue
    if [ -f "$dest/$rel/$f" ]; then
      cmp -s "$run/$f" "$dest/$rel/$f" || { echo "$dest/$rel/$f differs from $run/$f: not overwritten" >&2; exit 1; }
    else
      cp "$run/$f" "$dest/$rel/$f"; n=$((n + 1))
    fi
  done
done < <(find "$out" -mindepth 4 -maxdepth 4 -name metrics.json | sort)
echo "$n files archived under $dest"
