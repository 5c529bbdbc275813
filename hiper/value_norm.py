"""How the critic's heads relate to returns: value = head output x scale + shift, per head.

Zero-initialised value heads start at 0 while a win returns 10: with a few Adam steps per
training step the critic lags its targets by an order of magnitude for several steps, and in
that time HAE's advantages are mostly the critic's error (docs/learning/stability.md). Two ways
to close the gap:

* a fixed scale (`value_scale`): the heads predict returns / scale, so they move in units of
  the reward;
* running normalisation (`value_norm`): each head predicts its targets standardised by a running
  mean and spread of those targets (an exponential average over training steps, debiased, as
  PPO implementations that normalise values do, e.g. MAPPO's ValueNorm). After the first update
  every head reads the mean of its returns at once, and the network only learns the deviations,
  at unit scale, whatever the rewards' size.

The statistics are buffers of the critic, saved with it in checkpoints.
"""
from __future__ import annotations

import torch
from torch import nn

# Per training step: the average forgets a step's statistics in about ten steps, fast enough to
# follow returns that grow as the policy learns.
DECAY = 0.9
# Floor of the spread, in the returns' units: a batch whose targets are all equal (every episode
# lost) must not blow the next targets up by 1 / 0.
MIN_STD = 1e-2


class ValueNorm(nn.Module):
    """to_returns(head outputs) and to_heads(returns), per head (the last dimension)."""

    def __init__(self, num_heads: int, scale: float = 1.0, adaptive: bool = False):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"value_scale: must be > 0, got {scale!r}")
        if adaptive and scale != 1.0:
            raise ValueError(f"value_scale: value_norm learns the scale; leave value_scale at 1 (got {scale!r})")
        self.adaptive = adaptive
        # A fixed scale comes from the configuration; only learned statistics go into checkpoints.
        self.register_buffer("shift", torch.zeros(num_heads, dtype=torch.float64), persistent=adaptive)
        self.register_buffer("scale", torch.full((num_heads,), float(scale), dtype=torch.float64),
                             persistent=adaptive)
        if adaptive:
            # Debiased running moments: (decayed sums, decayed weight), as Adam debiases its moments.
            self.register_buffer("first_moment", torch.zeros(num_heads, dtype=torch.float64))
            self.register_buffer("second_moment", torch.zeros(num_heads, dtype=torch.float64))
            self.register_buffer("weight", torch.zeros(num_heads, dtype=torch.float64))

    def to_returns(self, heads: torch.Tensor) -> torch.Tensor:
        return heads * self.scale.to(heads) + self.shift.to(heads)

    def to_heads(self, returns: torch.Tensor, head: int) -> torch.Tensor:
        """Returns (any shape) in the units of head `head`."""
        return (returns - float(self.shift[head])) / float(self.scale[head])

    def observe(self, targets, reducer) -> None:
        """A training step's critic targets ((head, returns, mask, coef) per head, as the
        estimators give them) into the running statistics, over every rank (`reducer`)."""
        if not self.adaptive:
            return
        heads = self.scale.numel()
        means, squares, seen = [0.0] * heads, [0.0] * heads, [False] * heads
        for head, returns, mask, _ in targets:
            picked = returns[mask].double()
            sums = reducer.mean({"n": float(mask.sum()), "sum": float(picked.sum()),
                                 "square": float(picked.square().sum())})
            if sums["n"] > 0:
                means[head], squares[head], seen[head] = sums["sum"] / sums["n"], sums["square"] / sums["n"], True
        self.update(means, squares, seen)

    @torch.no_grad()
    def update(self, means: list[float], squares: list[float], seen: list[bool]) -> None:
        """One training step's statistics: per head, the mean of its targets and of their squares
        (over every rank); heads with no target this step (`seen` False) keep theirs."""
        if not self.adaptive:
            return
        seen_t = torch.tensor(seen, dtype=torch.bool)
        mean = torch.tensor(means, dtype=torch.float64)
        square = torch.tensor(squares, dtype=torch.float64)
        self.first_moment.copy_(torch.where(seen_t, DECAY * self.first_moment + (1 - DECAY) * mean, self.first_moment))
        self.second_moment.copy_(torch.where(seen_t, DECAY * self.second_moment + (1 - DECAY) * square,
                                             self.second_moment))
        self.weight.copy_(torch.where(seen_t, DECAY * self.weight + (1 - DECAY), self.weight))
        ready = self.weight > 0
        m = torch.where(ready, self.first_moment / self.weight.clamp_min(1e-12), self.shift)
        var = torch.where(ready, self.second_moment / self.weight.clamp_min(1e-12) - m * m, self.scale ** 2)
        self.shift.copy_(m)
        self.scale.copy_(var.clamp_min(MIN_STD ** 2).sqrt())
