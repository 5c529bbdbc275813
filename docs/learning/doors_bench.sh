#!/usr/bin/env bash
# Credit assignment over several segments with one delayed reward: keychest with DOORS locked
# doors (DOORS + 1 segments of two turns, 10 at the chest and nothing before it) and a warm start
# that errs in its plans (hiper sft --plan-noise: where it sets a new sub-goal, it heads for the
# chest too early, or looks for another way round the door, about half the time). HAE against GRPO and PPO with turn-level GAE, from the
# same warm start, with the same flags, on seeds 0-4 (`hiper bench learning`, one thread per run,
# two runs at a time). Resumable: run it again after an interruption.
#
#   DOORS=2 bash docs/learning/doors_bench.sh
#
# With no turn to spare (SPARE=0) the warm start of DOORS=2, hiper sft's tiny model (64 wide), won
# 0 of the 32 held-out games, which leaves GRPO nothing to learn from (the expert itself, erring in
# its plans, won 31 of its 200 episodes); with two (the default) it won 9 of 32.
#
# Writes the runs under $OUT (default runs/doors-$DOORS-bench) and copies what the docs show (the
# warm start's report, summary.json, curves.png, every run's metrics.jsonl) to
# docs/learning/doors-$DOORS/.
set -euo pipefail
DOORS=${DOORS:-2}
SPARE=${SPARE:-2}            # turns to spare (a wrong sub-goal costs one; with 0 it costs the chest)
SEEDS=${SEEDS:-0,1,2,3,4}
ESTIMATORS=${ESTIMATORS:-hae,grpo,turn_gae}
STEPS=${STEPS:-6}
JOBS=${JOBS:-2}
OUT=${OUT:-runs/doors-$DOORS-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
# The tiny model's tokenizer: SmolLM2's, from the tests' fixture (no model download or conversion).
TOKENIZER=${TOKENIZER:-$(cd "$HERE/../.." && pwd)/tests/fixtures/smollm2_tokenizer}
TURNS=$((2 * DOORS + 2 + SPARE))
PARAMS="doors=$DOORS,key_reward=0"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [ ! -d "$OUT/sft" ]; then
  hiper sft --env keychest --game-params "$PARAMS" --tiny-model --model "$TOKENIZER" --episodes 200 --max-turns "$TURNS" \
      --plan-noise 0.55 --keep-lost --steps 200 --batch-size 8 --micro-batch-size 8 --lr 5e-3 --seed 0 \
      --device cpu --out "$OUT/sft" --progress false
fi

# The loop of the segment learning test (tests/segment_runs.py): 4 PPO epochs in mini-batches of 8
# rows, 2 critic passes, value_norm, advantages not whitened over the batch; groups of 4 copies of
# a game for every estimator (GRPO needs them; the others see the same games).
hiper bench learning --env keychest --game-params "$PARAMS" --warm-start "$OUT/sft" \
    --estimators "$ESTIMATORS" --seeds "$SEEDS" --steps "$STEPS" --eval-every 2 --eval-episodes 32 \
    --jobs "$JOBS" --out "$OUT/bench" -- \
    --group-size 4 --envs 16 --max-turns "$TURNS" --max-new-tokens 40 --temperature 0.5 --actor-lr 2e-4 \
    --critic-lr 2e-3 --ppo-epochs 4 --critic-epochs 2 --mini-batch-size 8 --micro-batch-size 8 --kl-coef 0 \
    --entropy-coeff 0 \
    --freeze-embeddings --gradient-checkpointing false --norm-adv false --value-norm true --device cpu --engine hf

DEST="$HERE/doors-$DOORS"
mkdir -p "$DEST/runs"
cp "$OUT/bench/summary.json" "$OUT/bench/warm_start.json" "$OUT/bench/bench.json" "$DEST/"
cp "$OUT/bench/curves.png" "$DEST/" 2>/dev/null || true
for run in "$OUT"/bench/runs/*/; do
  cp "$run/metrics.jsonl" "$DEST/runs/$(basename "$run").jsonl"
done
