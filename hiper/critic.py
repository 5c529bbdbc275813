"""The critic: value heads (low, high, term) on a transformer backbone (docs/semantics.md §5).

By default a separate model initialised from the actor's checkpoint (as the authors run it);
with `shared=True` the heads sit on the actor's own backbone (one model in memory, as the
paper describes its critic), and the critic's optimiser then trains the heads only, reading
the actor's hidden states detached. For a LoRA actor the default critic is its own adapter set
on the actor's frozen base weights (`adapter=`): a critic backbone of its own at the cost of
adapters, not of a second copy of the model.

Values are aligned as in veRL: the value at response position j is the heads' output at the
token *before* response token j, so position 0 sees the prompt only.
"""
from __future__ import annotations

import torch
from torch import nn

from hiper.value_norm import ValueNorm

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

    def __init__(self, backbone: nn.Module, hidden_size: int, num_heads: int = 3, shared: bool = False,
                 adapter: str | None = None, value_scale: float = 1.0, value_norm: bool = False):
        super().__init__()
        if shared and adapter is not None:
            raise ValueError("adapter: a shared critic reads the actor's own hidden states; it has no adapter")
        self.backbone = backbone
        self.heads = ValueHeads(hidden_size, num_heads)
        # The heads' outputs are in the units of `norm`; values() returns them in the returns' units.
        self.norm = ValueNorm(num_heads, value_scale, adaptive=value_norm)
        self.shared = shared
        self.adapter = adapter
        self.num_heads = num_heads

    @classmethod
    def from_actor(cls, actor: nn.Module, num_heads: int = 3, shared: bool = False,
                   adapter: str | None = None, value_scale: float = 1.0, value_norm: bool = False) -> Critic:
        """A critic for `actor`: a copy of its backbone (default), the backbone itself (`shared`),
        or, for a LoRA actor, the backbone itself with adapter set `adapter` active (its own
        adapters on the actor's frozen base weights: no second copy of the weights)."""
        import copy

        base = actor.get_decoder() if hasattr(actor, "get_decoder") else actor.model
        backbone = base if shared or adapter is not None else copy.deepcopy(base)
        return cls(backbone, actor.config.hidden_size, num_heads, shared, adapter, value_scale, value_norm)

    @property
    def owns_backbone(self) -> bool:
        """Whether the backbone's weights are the critic's own (a copy), not the actor's."""
        return not self.shared and self.adapter is None

    def trainable_parameters(self):
        if self.shared:
            return list(self.heads.parameters())
        if self.adapter is not None:
            from hiper.models import adapter_parameters

            return adapter_parameters(self.backbone, self.adapter) + list(self.heads.parameters())
        return list(self.parameters())

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds of the critic: everything it trains (the heads, and its
        backbone or its adapters) and the statistics of its value normalisation, not the actor's
        weights it reads."""
        trained = {id(p) for p in self.trainable_parameters()}
        return {k: v.detach().contiguous() for k, v in self.state_dict(keep_vars=True).items()
                if self.owns_backbone or id(v) in trained or k.startswith("norm.")}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restores `checkpoint_state()`'s tensors; a tensor missing or unexpected is an error."""
        expected = self.checkpoint_state().keys()
        missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
        if missing or unexpected:
            raise ValueError(f"checkpoint: the critic's tensors do not match this critic (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}); resume with the critic settings that wrote it")
        self.load_state_dict(state, strict=False)

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_width: int) -> torch.Tensor:
        """(N, R, heads) the values of every response position, in the returns' units."""
        return self.norm.to_returns(self.head_outputs(input_ids, attention_mask, response_width))

    def head_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_width: int) -> torch.Tensor:
        from hiper.policy import position_ids

        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask))
        if self.shared:
            with torch.no_grad():
                hidden = self.backbone(**kwargs).last_hidden_state
        elif self.adapter is not None:
            from hiper.models import active_adapter

            with active_adapter(self.backbone, self.adapter):
                hidden = self.backbone(**kwargs).last_hidden_state
        else:
            hidden = self.backbone(**kwargs).last_hidden_state
        # The value of response position j is read at the token before it (position 0 at the
        # last prompt token): only those R positions go through the heads.
        return self.heads(hidden[:, -response_width - 1:-1, :])


def explained_variance(values: torch.Tensor, targets) -> dict[str, float | None]:
    """Per value head (low, high, term): 1 - Var(target - value) / Var(target) over the head's
    target positions (1: the head predicts its targets; 0: no better than their mean; below 0:
    worse). None for a head whose targets do not vary (or that has fewer than two)."""
    out = {}
    for head, returns, mask, _ in targets:
        target, value = returns[mask].double(), values[..., head][mask].double()
        spread = float(target.var(unbiased=False)) if target.numel() > 1 else 0.0
        out[HEADS[head]] = (1.0 - float((target - value).var(unbiased=False)) / spread) if spread > 1e-12 \
            else None
    return out


def critic_ready(explained: dict[str, float | None], minimum: float) -> bool:
    """Whether every head explains at least `minimum` of its targets' variance (a head whose
    targets did not vary, None, has nothing to explain and passes). A minimum of 0 or less asks
    nothing: ready even when a head explains less than nothing (a negative share)."""
    return minimum <= 0 or all(share is None or share >= minimum for share in explained.values())
