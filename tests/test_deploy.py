"""`funcd deploy` without a cluster: progress lines from status changes, and refusals before any I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from funcd_controller.deploy import Follower

from tests.support import run_cli


def _fn(observed: int, *conditions: tuple[str, str, str, str]) -> dict[str, Any]:
    conds = [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]
    return {"status": {"observedGeneration": observed, "conditions": conds}}


def test_follower_prints_conditions_of_the_applied_generation_only_when_they_change() -> None:
    lines: list[str] = []
    follower = Follower(2, lines.append)
    waiting = ("Ready", "False", "WorkloadUnavailable", "no replica")
    assert not follower.observe(_fn(1, ("Ready", "False", "InvalidSpec", "old")))  # an older generation
    assert lines == []
    assert not follower.observe(_fn(2, waiting))
    assert not follower.observe(_fn(2, waiting))  # no change: no new line
    assert follower.observe(_fn(2, ("Ready", "True", "Available", "up"), ("ScalerReady", "False", "X", "")))
    assert lines == [
        "Ready=False WorkloadUnavailable: no replica",
        "Ready=True Available: up",
        "ScalerReady=False X",
    ]


def test_deploy_refuses_an_invalid_function_with_exit_2_before_reaching_a_cluster(tmp_path: Path) -> None:
    path = tmp_path / "function.yaml"
    path.write_text("apiVersion: funcd.dev/v1alpha1\nkind: Function\nmetadata: {}\nspec: {image: 3}\n")
    result = run_cli("deploy", str(path), "--kubeconfig", str(tmp_path / "absent"))
    assert result.returncode == 2, result.stderr
    assert "metadata.name" in result.stderr and "spec.image" in result.stderr, result.stderr
    assert result.stdout == ""


def test_deploy_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("deploy", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert f"cannot read {tmp_path / 'nope.yaml'}" in result.stderr, result.stderr
