#!/usr/bin/env bash
# SAE variants on ML-100K's MiniLM item vectors: TopK (untied / tied decoder) vs ReLU + L1 (two penalties).
# Each trains once (2,000 steps; cached by inputs + settings, so reruns are quick); quality table to stdout
# and docs/tables/sae_variants_ml100k.md. The variants (row name -> flags): experiments/saerec_ml100k/sae_variants.yaml.
set -euo pipefail
T="{title} ({year}). Genres: {genres}"
variants=$(python "$(dirname "$0")/../study_config.py" "$(dirname "$0")/sae_variants.yaml" variants)
declare -a NAMES=() FLAGS=()
while IFS=$'\t' read -r name flags; do NAMES+=("$name"); FLAGS+=("$flags"); done <<< "$variants"
tmp=$(mktemp -d)
{
  echo "| SAE (6,144 latents) | explained variance | mean L0 | dead latents |"
  echo "|---|---|---|---|"
  for i in "${!NAMES[@]}"; do
    # shellcheck disable=SC2086
    semcollab intents --dataset ml-100k "--template=$T" --out "$tmp/$i" --top 1 ${FLAGS[$i]} > /dev/null
    python -c "import json,sys; q=json.load(open(sys.argv[1])); print(f\"| {sys.argv[2]} | {q['explained_variance']:.4f} | \
{q['l0']:.1f} | {q['dead_latents']:,} ({q['dead_fraction']:.0%}) |\")" "$tmp/$i/ml-100k/sae_quality.json" "${NAMES[$i]}"
  done
} | tee docs/tables/sae_variants_ml100k.md
rm -rf "$tmp"
