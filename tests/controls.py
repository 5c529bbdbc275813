"""Trainers that break one piece of the loop each: the controls of the learning tests
(tests/test_learning.py, tests/test_learning_segments.py), run to show that the assertion guarding
that piece fails without it."""
from __future__ import annotations

import dataclasses

import torch

from hiper.estimators import estimate
from hiper.trainer import Trainer


class NegatedAdvantages(Trainer):
    """Control of the success rate: every advantage negated (critic targets untouched)."""

    def advantages(self, rollout, spans, values):
        advantages, loss_mask, targets = super().advantages(rollout, spans, values)
        return -advantages, loss_mask, targets


class ShuffledTargets(Trainer):
    """Control of the critic: each head trains on its own targets in a random order (the same
    values, on the wrong states); the advantages are computed as usual."""

    def advantages(self, rollout, spans, values):
        advantages, loss_mask, targets = super().advantages(rollout, spans, values)
        generator = torch.Generator().manual_seed(self.step)
        shuffled = []
        for head, returns, mask, coef in targets:
            returns = returns.clone()
            picked = returns[mask]
            returns[mask] = picked[torch.randperm(picked.numel(), generator=generator)]
            shuffled.append((head, returns, mask, coef))
        return advantages, loss_mask, shuffled


class SegmentLevelZeroed(Trainer):
    """Control of the segment level: HAE with its segment-level advantage (A^H) on no token, the
    turn-level and switch advantages and every critic target as they are."""

    def advantages(self, rollout, spans, values):
        cfg = self.config
        no_high = dataclasses.replace(cfg.hae_config(), assign_high_to_subgoal=False)
        return estimate(cfg.estimator, rollout.batch, spans=spans, values=values, masker=self.masker,
                        groups=self.task_groups(rollout.batch), observations=rollout.observations,
                        hae_config=no_high, flat_config=cfg.flat_config(),
                        head_coefs=(1.0, cfg.high_value_coef, cfg.term_value_coef), reducer=self.reducer)
