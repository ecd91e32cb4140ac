"""The learning-rate multiplier of a step (training/schedule.py)."""

from __future__ import annotations

import math

import pytest
from test_loop import cfg

from srgan_pipeline.training import lr_factor


def test_lr_factor_warms_up_then_follows_a_cosine_to_zero():
    cosine = cfg(iterations=100, lr_schedule="cosine", warmup_steps=10)
    assert lr_factor(cosine, 0) == pytest.approx(0.1 * 0.5 * (1 + math.cos(0)))
    assert lr_factor(cosine, 50) == pytest.approx(0.5)
    assert lr_factor(cosine, 100) == pytest.approx(0.0)
    # a wall-clock budget that ends the run first drives the decay instead
    assert lr_factor(cosine, 10, budget_used=0.5) == pytest.approx(0.5)
    assert lr_factor(cfg(iterations=100), 50) == 1.0

def test_a_cosine_under_a_floor_decays_to_zero_at_the_floor_when_the_budget_is_spent():
    floored = cfg(iterations=100, lr_schedule="cosine", max_minutes=1.0, min_iterations=40)
    # the budget is long spent, but the floor keeps the run going to step 40: not at lr 0
    assert lr_factor(floored, 20, budget_used=3.0) == pytest.approx(0.5)
    assert lr_factor(floored, 40, budget_used=3.0) == pytest.approx(0.0)
    # half the budget at step 10: the run will end at the floor, so the steps drive the decay
    assert lr_factor(floored, 10, budget_used=0.5) == pytest.approx(0.5 * (1 + math.cos(
        math.pi / 4)))
    # 0.6 of it at step 30: the budget ends the run past the floor, and drives the decay
    assert lr_factor(floored, 30, budget_used=0.6) == pytest.approx(0.5 * (1 + math.cos(
        math.pi * 0.6)))


def test_lr_factor_steps_down_at_each_milestone_as_the_paper_does():
    paper = cfg("adversarial", iterations=200_000, lr_schedule="step", lr_milestones=[100_000],
                lr_gamma=0.1)
    assert lr_factor(paper, 0) == 1.0 and lr_factor(paper, 99_999) == 1.0
    assert lr_factor(paper, 100_000) == pytest.approx(0.1)  # update 100 001 on: 1e-5
    two = cfg(lr_schedule="step", lr_milestones=[2, 5], lr_gamma=0.5)
    assert [lr_factor(two, step) for step in range(7)] == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
