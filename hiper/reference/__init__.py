"""Reference implementations of every op: the test oracles and the benchmark baselines.

hae_loops:  plain-Python loops over trajectories and turns in float64, written straight
            from the method's definition (the way the authors' estimator is written).
hae_torch:  vectorised pure-PyTorch twins of the compiled ops (no Python loop over rows or
            turns), op by op: a second oracle.
hae_torch_fast: the whole estimator written for speed in eager PyTorch, the benchmark's
            "what does PyTorch cost" baseline (benchmarks/bench_hae.py).
"""
