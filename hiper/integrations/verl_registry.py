"""HAE in verl's own advantage-estimator registry: one config line in a verl trainer.

    algorithm.adv_estimator=hiper_hae      # the estimator
    critic.enable=True                     # verl enables a critic by itself only for "gae"

`pip install hiper` declares a `verl.plugins` entry point, so `import verl` (in the driver
and in every Ray worker) runs `register()`: it adds "hiper_hae" to
`verl.trainer.ppo.core_algos.ADV_ESTIMATOR_REGISTRY`. verl hands registered estimators only
token rewards, the response mask and the uid, while HAE needs the whole batch (critic
values, trajectory ids, turn indices, responses for the span masks), so `register()` also
wraps verl's `compute_advantage` (in `verl.trainer.ppo.ray_trainer` and the v1 trainer's
utils, as they are imported) to pass the batch itself when the estimator is "hiper_hae";
every other estimator goes through untouched.

What `compute_advantage(data)` reads from a verl `DataProto`:
    batch: responses, response_mask, token_level_rewards (turn reward = its sum);
           value_low / value_high / value_term (three-headed critic, as hiper's own), or
           verl's single-headed `values`, then shared by the three HAE values;
    non_tensor_batch: traj_uid (else every row is a one-turn trajectory), turn_idx (else
           0), dones (else every trajectory ends done), is_action_valid (optional).
It writes advantages (N, L), returns (N, L: each turn's low-level return on its response
tokens, the target of a single value head), and the per-head returns and credit masks.
HAE options come from `algorithm.hiper` (HAEConfig field names) when the config has it,
gamma / lam from `algorithm.gamma` / `algorithm.lam` otherwise; the tokenizer (for the span
masks) from the HIPER_TOKENIZER environment variable (a path or hub name), or pass one.
"""
from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

import numpy as np

from hiper.config import HAEConfig

ESTIMATOR = "hiper_hae"
_PATCHED_MODULES = ("verl.trainer.ppo.ray_trainer", "verl.trainer.ppo.v1.utils")
_TOKENIZERS: dict[str, Any] = {}


def hae_config_from(algorithm: Any) -> HAEConfig:
    """HAEConfig from a verl `algorithm` config (DictConfig, dataclass or mapping)."""
    if algorithm is None:
        return HAEConfig()

    def get(key, default=None):
        if isinstance(algorithm, dict):
            return algorithm.get(key, default)
        getter = getattr(algorithm, "get", None)
        return getter(key, default) if callable(getter) else getattr(algorithm, key, default)

    values = {}
    for key in ("gamma", "lam"):
        if get(key) is not None:
            values["gamma" if key == "gamma" else "lam_turn"] = float(get(key))
    overrides = get("hiper")
    if overrides is not None:
        known = {f.name for f in dataclasses.fields(HAEConfig)}
        items = dict(overrides.items()) if hasattr(overrides, "items") else dict(overrides)
        unknown = set(items) - known
        if unknown:
            raise ValueError(f"algorithm.hiper: unknown HAEConfig fields {sorted(unknown)}")
        values.update(items)
    return HAEConfig(**values)


def default_tokenizer():
    name = os.environ.get("HIPER_TOKENIZER")
    if not name:
        raise ValueError("tokenizer: hiper_hae needs the policy's tokenizer for its span masks; set HIPER_TOKENIZER "
                         "to the model path (in Ray, through runtime_env env_vars) or pass tokenizer=")
    if name not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[name] = AutoTokenizer.from_pretrained(name)
    return _TOKENIZERS[name]


def compute_advantage(data: Any, config: HAEConfig | None = None, tokenizer=None) -> Any:
    """HAE on a verl DataProto (or anything with .batch / .non_tensor_batch), in place."""
    import torch

    from hiper.hae_pipeline import hae_for_responses
    from hiper.integrations.verl import span_masker_for

    batch, meta = data.batch, data.non_tensor_batch
    for key in ("responses", "response_mask", "token_level_rewards"):
        if key not in batch.keys():
            raise KeyError(f"data.batch[{key!r}] is required by {ESTIMATOR}")
    responses, response_mask = batch["responses"], batch["response_mask"].bool()
    n = responses.shape[0]
    masker = span_masker_for(tokenizer if tokenizer is not None else default_tokenizer())
    keys = set(batch.keys())
    if {"value_low", "value_high"} <= keys:
        values = {h: batch[f"value_{h}"] for h in ("low", "high", "term") if f"value_{h}" in keys}
    elif "values" in keys:
        values = batch["values"]  # verl's single value head: shared by the three HAE values
    else:
        raise KeyError(f"data.batch: {ESTIMATOR} needs critic values ('values', or 'value_low' and 'value_high'); "
                       "set critic.enable=True")
    hae = hae_for_responses(
        responses, response_mask, values, masker=masker, config=config or HAEConfig(),
        traj_ids=meta["traj_uid"] if "traj_uid" in meta else np.arange(n),  # else: one-turn trajectories
        turn_idx=meta["turn_idx"] if "turn_idx" in meta else np.zeros(n, np.int64),
        dones=meta["dones"] if "dones" in meta else np.ones(n, bool),
        rewards=(batch["token_level_rewards"].float() * response_mask).sum(dim=1),
        is_action_valid=meta.get("is_action_valid"))
    out = hae.outputs  # on the responses' device
    # A single value head regresses every response token: give each token its turn's R^L.
    turn_return = out["returns_low"].sum(dim=1, keepdim=True)
    for key, value in out.items():
        batch[key] = value
    batch["returns"] = (turn_return * response_mask).to(torch.float32)
    return data


def hae_estimator(token_level_rewards=None, response_mask=None, config=None, index=None, data=None, **kwargs):
    """The function registered as "hiper_hae". Returns (advantages, returns), (N, L)."""
    if data is None:
        raise RuntimeError(f"{ESTIMATOR}: needs the whole batch, which verl's compute_advantage does not pass; "
                           "hiper wraps it when `import verl` loads hiper's plugin (or after "
                           "hiper.integrations.verl_registry.register()) - make sure that ran in this process")
    compute_advantage(data, hae_config_from(config))
    return data.batch["advantages"], data.batch["returns"]


def _wrap_compute_advantage(module) -> None:
    original = getattr(module, "compute_advantage", None)
    if original is None or getattr(original, "_hiper_wrapped", False):
        return

    def compute_advantage_with_hiper(data, adv_estimator, *args, **kwargs):
        name = getattr(adv_estimator, "value", adv_estimator)
        if name != ESTIMATOR:
            return original(data, adv_estimator, *args, **kwargs)
        config = kwargs.get("config")
        cfg = hae_config_from(config)
        if config is None:  # gamma / lam given positionally or by keyword, as verl passes them
            gamma = kwargs.get("gamma", args[0] if args else cfg.gamma)
            lam = kwargs.get("lam", args[1] if len(args) > 1 else cfg.lam_turn)
            cfg = dataclasses.replace(cfg, gamma=float(gamma), lam_turn=float(lam))
        return compute_advantage(data, cfg)

    compute_advantage_with_hiper._hiper_wrapped = True
    compute_advantage_with_hiper.__wrapped__ = original
    module.compute_advantage = compute_advantage_with_hiper


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wraps compute_advantage in verl's trainer modules right after they are imported."""

    def find_spec(self, name, path, target=None):
        if name not in _PATCHED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _wrap_compute_advantage(module)

        spec.loader.exec_module = exec_module
        return spec


def register() -> bool:
    """Registers "hiper_hae" with verl when verl is installed; False when it is not."""
    try:
        from verl.trainer.ppo import core_algos
    except ImportError:
        return False
    if ESTIMATOR not in core_algos.ADV_ESTIMATOR_REGISTRY:
        core_algos.register_adv_est(ESTIMATOR)(hae_estimator)
    if not any(isinstance(f, _WrapOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _WrapOnImport())
    for name in _PATCHED_MODULES:
        if name in sys.modules:
            _wrap_compute_advantage(sys.modules[name])
    return True
