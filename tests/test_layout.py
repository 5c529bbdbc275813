"""The trajectory layout against a direct construction."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hiper
from hiper.reference import hae_loops


def check_layout(traj, turn, switch):
    lay = hiper.build_layout(traj, turn, switch)
    groups = hae_loops.group_trajectories(list(traj), turn)
    ids = sorted(groups)
    assert lay.num_rows == len(traj)
    assert lay.num_trajectories == len(ids)
    expected_order = [row for tid in ids for row in groups[tid]]
    np.testing.assert_array_equal(lay.order, expected_order)
    np.testing.assert_array_equal(np.diff(lay.traj_offsets), [len(groups[t]) for t in ids])
    seg_starts, traj_seg = [], [0]
    offset = 0
    boundary = np.zeros(len(traj), bool)
    position = np.zeros(len(traj), np.int64)
    for tid in ids:
        rows = groups[tid]
        for pos, row in enumerate(rows):
            position[row] = pos
        for s, _ in hae_loops.segments_of(rows, switch):
            seg_starts.append(offset + s)
            boundary[rows[s]] = True
        offset += len(rows)
        traj_seg.append(len(seg_starts))
    np.testing.assert_array_equal(lay.seg_offsets, seg_starts + [len(traj)])
    np.testing.assert_array_equal(lay.traj_seg_offsets, traj_seg)
    np.testing.assert_array_equal(lay.is_boundary, boundary)
    np.testing.assert_array_equal(lay.position, position)
    return lay


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("id_range", [40, 10**15])  # dense table / sort path
@pytest.mark.parametrize("gaps", [False, True])
def test_random_layouts(seed, id_range, gaps):
    rng = np.random.default_rng(seed)
    ids = rng.choice(id_range, size=20, replace=False) - id_range // 2
    traj, turn = [], []
    for tid in ids:
        T = int(rng.integers(1, 12))
        turns = np.sort(rng.choice(40, size=T, replace=False)) if gaps else np.arange(T)
        traj += [tid] * T
        turn += list(turns)
    perm = rng.permutation(len(traj))
    traj, turn = np.asarray(traj)[perm], np.asarray(turn)[perm]
    check_layout(traj, turn, rng.random(len(traj)) < 0.4)


def test_empty_and_extreme_ids():
    lay = hiper.build_layout(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert lay.num_rows == lay.num_trajectories == lay.num_segments == 0
    big = np.iinfo(np.int64)
    check_layout(np.array([big.max, big.min, big.max]), np.array([1, 0, 0]), np.array([True, True, False]))


def test_turn_zero_always_starts_a_segment():
    lay = check_layout(np.array([1, 1, 1]), np.array([0, 1, 2]), np.array([False, False, False]))
    assert lay.num_segments == 1
    lay = check_layout(np.array([1, 1, 1]), np.array([0, 1, 2]), np.array([True, True, True]))
    assert lay.num_segments == 3


def test_arrays_are_read_only():
    lay = hiper.build_layout(np.array([0, 0]), np.array([0, 1]))
    with pytest.raises(ValueError):
        lay.order[0] = 1


@pytest.mark.parametrize("turns", [[0, 0], [3, 1, 3], [0, 5, 5]])
def test_duplicate_turns_raise(turns):
    with pytest.raises(ValueError, match="turn_idx.*more than once"):
        hiper.build_layout(np.zeros(len(turns), np.int64), np.array(turns))


def test_negative_turn_raises():
    with pytest.raises(ValueError, match="turn_idx.*non-negative"):
        hiper.build_layout(np.array([0, 0]), np.array([0, -1]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 6), st.booleans()), max_size=30,
                unique_by=lambda x: (x[0], x[1])))
def test_layout_property(rows):
    traj = np.array([r[0] for r in rows], np.int64)
    turn = np.array([r[1] for r in rows], np.int64)
    switch = np.array([r[2] for r in rows], bool)
    check_layout(traj, turn, switch)
