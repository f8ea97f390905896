"""testbin/jaeger_ui.py: where the built Jaeger UI is found, and the sources it refuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, load_module

jaeger_ui = load_module("funcd_testbin_jaeger_ui", ROOT / "testbin" / "jaeger_ui.py")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUNCD_TESTBIN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / f"jaeger-ui-{jaeger_ui.VERSION}"


def test_assets_are_found_only_with_the_pinned_commit_stamp_and_an_index(cache: Path) -> None:
    assert jaeger_ui.assets_dir() is None
    (cache / "assets").mkdir(parents=True)
    (cache / ".recipe").write_text(jaeger_ui.COMMIT + "\n")
    assert jaeger_ui.assets_dir() is None  # no index.html
    (cache / "assets" / "index.html").write_text("<html></html>")
    assert jaeger_ui.assets_dir() == cache / "assets"
    (cache / ".recipe").write_text("0" * 40 + "\n")
    assert jaeger_ui.assets_dir() is None  # built from another commit
    assert jaeger_ui.main(["--print-path"]) == 1


def test_a_source_tree_of_another_release_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "src" / "packages" / "jaeger-ui" / "package.json"
    package.parent.mkdir(parents=True)
    package.write_text(json.dumps({"name": "jaeger-ui", "version": "1.75.0"}))
    (tmp_path / "dest").mkdir()
    with pytest.raises(jaeger_ui.BuildError, match=r"expected version 1\.76\.0, found 1\.75\.0"):
        jaeger_ui._unpack(tmp_path / "src", tmp_path / "dest")


def test_a_directory_that_is_no_source_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    with pytest.raises(jaeger_ui.BuildError, match="neither a git directory"):
        jaeger_ui._unpack(tmp_path, tmp_path / "dest")


def test_a_git_directory_without_the_pinned_commit_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (tmp_path / "work").mkdir()
    with pytest.raises(jaeger_ui.BuildError, match=r"does not hold jaeger-ui v1\.76\.0 \(commit 1ceadb6f"):
        jaeger_ui._unpack(repo, tmp_path / "work" / "dest")
