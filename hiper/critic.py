"""The critic: value heads (low, high, term) on a transformer backbone (SPEC §5).

By default a separate model initialised from the actor's checkpoint (as the authors run it);
with `shared=True` the heads sit on the actor's own backbone (one model in memory, as the
paper describes its critic), and the critic's optimiser then trains the heads only, reading
the actor's hidden states detached.

Values are aligned as in veRL: the value at response position j is the heads' output at the
token *before* response token j, so position 0 sees the prompt only.
"""
from __future__ import annotations

import torch
from torch import nn

HEADS = ("low", "high", "term")


class ValueHeads(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int = 3):
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_heads)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # float32 even under bf16 autocast: bf16 keeps ~3 significant digits, too coarse for value regression.
        with torch.autocast(hidden.device.type, enabled=False):
            return self.linear(hidden.float())


class Critic(nn.Module):
    """values(input_ids, attention_mask, response_width) -> (N, R, heads) float32."""

    def __init__(self, backbone: nn.Module, hidden_size: int, num_heads: int = 3, shared: bool = False):
        super().__init__()
        self.backbone = backbone
        self.heads = ValueHeads(hidden_size, num_heads)
        self.shared = shared
        self.num_heads = num_heads

    @classmethod
    def from_actor(cls, actor: nn.Module, num_heads: int = 3, shared: bool = False) -> Critic:
        """A critic for `actor`: a copy of its backbone (default) or the backbone itself."""
        import copy

        base = actor.get_decoder() if hasattr(actor, "get_decoder") else actor.model
        backbone = base if shared else copy.deepcopy(base)
        return cls(backbone, actor.config.hidden_size, num_heads, shared)

    def trainable_parameters(self):
        return list(self.heads.parameters()) if self.shared else list(self.parameters())

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_width: int) -> torch.Tensor:
        from hiper.policy import position_ids

        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask))
        if self.shared:
            with torch.no_grad():
                hidden = self.backbone(**kwargs).last_hidden_state
        else:
            hidden = self.backbone(**kwargs).last_hidden_state
        # The value of response position j is read at the token before it (position 0 at the
        # last prompt token): only those R positions go through the heads.
        return self.heads(hidden[:, -response_width - 1:-1, :])
