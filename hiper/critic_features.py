"""A shared critic's update without running the backbone again.

A shared critic (`--shared-critic true`) is three linear heads on the actor's own backbone,
and the update trains the heads only. The scoring pass of a step already runs that backbone over
every row, for the old log-probs and the values, and the backbone does not change between that
pass and the critic's update (the critic trains first, the actor after it). So the hidden states
the heads read are kept from the scoring pass, at the positions the critic's targets use, and
every critic epoch fits the heads on them: no backbone forward in the critic update at all
(it was 12.8 of 102 s in a LoRA step of SmolLM2 on 2 CPU cores).

The scoring pass holds the hidden state of every response position until the targets are
known (4 bytes x rows x response width x hidden size); above FEATURE_BUDGET_BYTES the trainer
does not keep them and the update runs the backbone as for any critic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Most a step may hold of hidden states between its scoring pass and its critic update.
FEATURE_BUDGET_BYTES = 1 << 30


def fits(num_rows: int, response_width: int, hidden_size: int) -> bool:
    """Whether a step's hidden states fit FEATURE_BUDGET_BYTES (float32)."""
    return 4 * num_rows * response_width * hidden_size <= FEATURE_BUDGET_BYTES


@dataclass
class TargetFeatures:
    """Hidden states at the positions where some critic target sits: of a batch of num_rows
    rows, the row and column of each position and its (M, H) hidden state."""

    num_rows: int
    rows: torch.Tensor
    cols: torch.Tensor
    hidden: torch.Tensor

    @classmethod
    def at_targets(cls, hidden: torch.Tensor, targets) -> "TargetFeatures":
        """From (N, R, H) hidden states of every response position, those of the positions in
        any of `targets`' masks (the trainer's (head, returns, mask, coef) list)."""
        wanted = torch.zeros(hidden.shape[:2], dtype=torch.bool)
        for _, _, mask, _ in targets:
            wanted |= mask.to(wanted.device)
        rows, cols = wanted.nonzero(as_tuple=True)
        return cls(hidden.shape[0], rows, cols, hidden[rows, cols])

    def head_outputs(self, heads: torch.nn.Module, rows: torch.Tensor, R: int, device: torch.device) -> torch.Tensor:
        """(len(rows), R, heads) the heads' outputs for the batch rows `rows`, in that order:
        computed at the kept positions, zero elsewhere (positions no target reads)."""
        slot = torch.full((self.num_rows,), -1, dtype=torch.long)
        slot[rows] = torch.arange(len(rows))
        row_slot = slot[self.rows]
        picked = row_slot >= 0
        out = heads(self.hidden[picked].to(device))
        values = torch.zeros((len(rows), R, out.shape[-1]), dtype=out.dtype, device=out.device)
        values[row_slot[picked].to(device), self.cols[picked].to(device)] = out
        return values
