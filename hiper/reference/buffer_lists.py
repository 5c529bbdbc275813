"""The trajectory buffer with Python lists and `pad_sequence`: the test oracle and the
benchmark baseline for hiper.buffer.TrajectoryBuffer."""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence


class ListTrajectoryBuffer:
    def __init__(self, num_envs: int, pad_token_id: int = 0):
        self.num_envs = num_envs
        self.pad_token_id = pad_token_id
        self.turns: list[list[dict]] = [[] for _ in range(num_envs)]

    def append(self, env_ids, prompt_tokens, prompt_mask, response_tokens, response_mask, rewards, dones,
               valid=None, is_new_subgoal=None):
        for r, env in enumerate(torch.as_tensor(env_ids).tolist()):
            self.turns[env].append(dict(
                prompt=torch.as_tensor(prompt_tokens[r])[torch.as_tensor(prompt_mask[r]).bool()],
                response=torch.as_tensor(response_tokens[r])[torch.as_tensor(response_mask[r]).bool()],
                reward=float(rewards[r]), done=bool(dones[r]),
                valid=True if valid is None else bool(valid[r]),
                switch=False if is_new_subgoal is None else bool(is_new_subgoal[r])))

    def pack(self) -> dict:
        rows = [t for env in self.turns for t in env]
        prompts = [t["prompt"] for t in rows]
        responses = [t["response"] for t in rows]
        # Left padding = right-pad the reversed sequences, then flip back.
        left = pad_sequence([p.flip(0) for p in prompts], batch_first=True, padding_value=self.pad_token_id).flip(1)
        left_mask = pad_sequence([torch.ones(len(p), dtype=torch.bool).flip(0) for p in prompts],
                                 batch_first=True).flip(1)
        right = pad_sequence(responses, batch_first=True, padding_value=self.pad_token_id)
        right_mask = pad_sequence([torch.ones(len(r), dtype=torch.bool) for r in responses], batch_first=True)
        counts = torch.tensor([len(env) for env in self.turns])
        return {
            "prompts": left, "prompt_mask": left_mask, "responses": right, "response_mask": right_mask,
            "input_ids": torch.cat([left, right], dim=1), "attention_mask": torch.cat([left_mask, right_mask], dim=1),
            "env_ids": torch.tensor([e for e, env in enumerate(self.turns) for _ in env], dtype=torch.long),
            "turn_idx": torch.tensor([k for env in self.turns for k in range(len(env))], dtype=torch.long),
            "rewards": torch.tensor([t["reward"] for t in rows], dtype=torch.float32),
            "dones": torch.tensor([t["done"] for t in rows]),
            "is_action_valid": torch.tensor([t["valid"] for t in rows]),
            "is_new_subgoal": torch.tensor([t["switch"] for t in rows]),
            "traj_offsets": torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
        }
