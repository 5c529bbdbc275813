#!/usr/bin/env bash
# Learning curves on keychest (hiper/envs/keychest.py: take the key, then open the chest), from a
# supervised warm start on a noisy expert: HAE against the flat baselines GRPO and PPO with GAE, the
# same budget and settings, seeds 0 and 1 (SEEDS="0 1 2" for more). CPU only, about 40 minutes on
# 2 cores. Writes the runs under $OUT (default runs/keychest-curves) and the figure to
# docs/learning/keychest.png; the metrics of every run are copied beside it.
#
#   bash docs/learning/keychest.sh
set -euo pipefail
OUT=${OUT:-runs/keychest-curves}
SEEDS=${SEEDS:-"0 1"}
STEPS=${STEPS:-12}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

for seed in $SEEDS; do
  # The warm start: a tiny model learns the format from an expert that takes a random other
  # action half the time (lost episodes kept), so it wins about a third of the held-out games.
  hiper sft --env keychest --tiny-model --episodes 200 --max-turns 3 --expert-noise 0.5 --keep-lost \
      --steps 200 --batch-size 8 --micro-batch-size 8 --lr 5e-3 --seed "$seed" --device cpu \
      --out "$OUT/sft-$seed" --overwrite --progress false
  hiper eval --checkpoint "$OUT/sft-$seed" --env keychest --episodes 48 --max-turns 2 --max-new-tokens 40 \
      --device cpu --progress false > "$OUT/sft-$seed/eval.json"
  for estimator in hae grpo gae; do
    group=1; [ "$estimator" = grpo ] && group=4
    hiper train --env keychest --model "$OUT/sft-$seed" --estimator "$estimator" --group-size "$group" \
        --seed "$seed" --steps "$STEPS" --envs 16 --max-turns 2 --max-new-tokens 40 --temperature 0.5 \
        --actor-lr 1e-4 --critic-lr 2e-3 --ppo-epochs 4 --mini-batch-size 16 --micro-batch-size 16 \
        --kl-coef 0 --entropy-coeff 0 --freeze-embeddings --gradient-checkpointing false \
        --eval-every 2 --eval-envs 48 --save-every 0 --device cpu --engine hf --progress false \
        --run-dir "$OUT/$estimator-$seed" --overwrite
    mkdir -p "$HERE/keychest-runs"
    cp "$OUT/$estimator-$seed/metrics.jsonl" "$HERE/keychest-runs/$estimator-$seed.jsonl"
  done
  cp "$OUT/sft-$seed/eval.json" "$HERE/keychest-runs/sft-$seed-eval.json"
done

runs() { local out=""; for seed in $SEEDS; do out+="${out:+,}$OUT/$1-$seed"; done; echo "$out"; }
hiper plot --compare "HAE=$(runs hae)" "GRPO=$(runs grpo)" "PPO-GAE=$(runs gae)" \
    --title "keychest, tiny model from a noisy-expert warm start (seeds: $SEEDS)" --out "$HERE/keychest.png"
