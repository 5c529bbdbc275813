"""An environment family of our own, registered the way a user registers theirs."""
from hiper.envs import EnvSpec
from hiper.envs.registry import Family


def counting(goal: int) -> EnvSpec:
    return EnvSpec("custom", {"factory": "envs_for_tests:CountingEnv", "goal": goal})


COUNTING = Family("counting", {"train": [counting(g) for g in (1, 2, 3, 4)], "test": [counting(g) for g in (5, 6)]},
                  role="You are an expert agent counting up to a goal.", task_type=lambda spec: f"goal{spec.kwargs['goal']}")
