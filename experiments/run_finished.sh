# Sourced by the study scripts (experiments/*/run.sh): run_finished DIR SEED succeeds when DIR holds a finished run (metrics.json
# written) trained with that seed, so a rerun into the same output folder only adds missing runs.
run_finished() { grep -lxs "  seed: $2" "$1"/*/config.yaml 2>/dev/null | while read -r c; do
  [ -f "$(dirname "$c")/metrics.json" ] && echo yes; done | grep -q yes; }
