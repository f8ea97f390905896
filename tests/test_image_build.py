"""``funcd build``: argument errors, layer contents, reproducibility, requirements (fake base by umoci)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest
from funcd_controller.image import ImageBuildError, build_function_image, names, parse_ref

from functions_framework.cli import main
from tests.image_support import Archive, make_fake_base, make_wheel, umoci
from tests.support import run_cli, write_function

HELLO = "def handler(context, event):\n    return 'hello'\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_base(tmp_path_factory.mktemp("base"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    fn = write_function(tmp_path / "fn", HELLO)
    (fn / "data").mkdir()
    (fn / "data" / "greeting.txt").write_text("hi\n")
    (fn / "run.sh").write_text("#!/bin/sh\n")
    (fn / "run.sh").chmod(0o755)
    for junk in ("__pycache__", ".git", ".venv"):
        (fn / junk).mkdir()
        (fn / junk / "x").write_text("junk")
    (fn / "main.cpython-311.pyc").write_bytes(b"junk")
    return fn


def build_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["build", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


# ---------------------------------------------------------------------------------------- errors


def test_missing_folder_is_a_one_line_usage_error(tmp_path: Path, base: Path, capsys) -> None:
    err = build_error(capsys, str(tmp_path / "nope"), "--tag", "hello:1", "--base", str(base))
    assert "expected a function folder holding main.py, found nothing" in err


def test_folder_without_main_py(tmp_path: Path, base: Path, capsys) -> None:
    err = build_error(capsys, str(tmp_path), "--tag", "hello:1", "--base", str(base))
    assert "found no main.py" in err


def test_main_py_without_the_target(folder: Path, base: Path, capsys) -> None:
    err = build_error(capsys, str(folder), "--tag", "hello:1", "--base", str(base), "--target", "greet")
    assert "expected a function named 'greet', found top-level names: handler" in err


def test_main_py_with_a_syntax_error(tmp_path: Path, base: Path, capsys) -> None:
    fn = write_function(tmp_path / "fn", "def handler(:\n")
    err = build_error(capsys, str(fn), "--tag", "hello:1", "--base", str(base))
    assert "main.py:1: expected Python source, got a syntax error" in err


@pytest.mark.parametrize("tag", ["Hello:1", "hello:", "hello:a b", "hello::1", "_x:1", "hello@sha256:ab"])
def test_bad_tag(folder: Path, base: Path, capsys, tag: str) -> None:
    err = build_error(capsys, str(folder), "--tag", tag, "--base", str(base))
    assert f"--tag {tag!r}: expected NAME[:TAG]" in err


def test_missing_base_image_names_make_image(folder: Path, tmp_path: Path, capsys) -> None:
    err = build_error(capsys, str(folder), "--tag", "hello:1", "--base", str(tmp_path / "none.tar"))
    assert "none.tar: expected an OCI archive (make image), found nothing" in err


def test_base_that_is_not_a_runtime_image(folder: Path, tmp_path: Path, capsys) -> None:
    plain = make_fake_base(tmp_path / "plain", labels=False)
    err = build_error(capsys, str(folder), "--tag", "hello:1", "--base", str(plain))
    assert f"expected a funcd runtime image (labels {names.LABEL_PYTHON}" in err


def test_base_that_is_not_a_tar(folder: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "base.tar").write_text("not a tar")
    err = build_error(capsys, str(folder), "--tag", "hello:1", "--base", str(tmp_path / "base.tar"))
    assert "expected an OCI archive (a tar)" in err


def test_tag_is_required_and_exit_code_is_2_from_the_command(folder: Path) -> None:
    proc = run_cli("build", str(folder))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("funcd: error: the following arguments are required: --tag")


def test_bad_source_date_epoch(folder: Path, base: Path) -> None:
    proc = run_cli("build", str(folder), "--tag", "a:1", "--base", str(base), env={"SOURCE_DATE_EPOCH": "x"})
    assert proc.returncode == 2
    assert "SOURCE_DATE_EPOCH: expected whole seconds since 1970, got 'x'" in proc.stderr


def test_refs_are_qualified_as_containerd_names_them() -> None:
    assert parse_ref("hello:1").qualified == "docker.io/library/hello:1"
    assert parse_ref("hello").name == "hello:latest"
    assert parse_ref("team/hello:2").qualified == "docker.io/team/hello:2"
    assert parse_ref("localhost:5000/hello:3").qualified == "localhost:5000/hello:3"
    assert parse_ref("registry.example/a/b:v1.0").qualified == "registry.example/a/b:v1.0"


# ---------------------------------------------------------------------------------------- contents


def test_function_layer_on_the_base(folder: Path, base: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "hello.tar"
    assert main(["build", str(folder), "--tag", "hello:1", "--base", str(base), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    archive = Archive(out)
    entry = archive.index["manifests"][0]
    assert entry["annotations"] == {
        names.REF_NAME: "hello:1",
        names.CONTAINERD_NAME: "docker.io/library/hello:1",
    }
    assert entry["digest"] in printed
    assert entry["platform"] == {"os": "linux", "architecture": "amd64"}
    based = Archive(base)
    assert archive.manifest["layers"][:-1] == based.manifest["layers"]  # the base's layers, unchanged
    assert (
        archive.manifest["annotations"]["org.opencontainers.image.base.digest"]
        == (based.index["manifests"][0]["digest"])
    )
    layer = archive.layer(-1)
    members = {m.name: m for m in layer.getmembers()}
    assert sorted(members) == [
        "function",
        "function/data",
        "function/data/greeting.txt",
        "function/main.py",
        "function/run.sh",
    ]
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())
    assert members["function/main.py"].mode == 0o644 and members["function/run.sh"].mode == 0o755
    f = layer.extractfile("function/main.py")
    assert f is not None and f.read().decode() == HELLO
    # The config: the base's, with the layer's diff_id appended; the digests check out.
    raw = archive.blob(archive.manifest["layers"][-1]["digest"])
    assert (
        archive.config["rootfs"]["diff_ids"][-1]
        == "sha256:" + hashlib.sha256(gzip.decompress(raw)).hexdigest()
    )
    assert len(archive.config["rootfs"]["diff_ids"]) == len(archive.manifest["layers"])
    assert archive.config["config"]["Entrypoint"] == ["funcd", "run"]
    assert archive.config["config"]["WorkingDir"] == "/function"
    assert archive.config["config"]["User"] == "65532:65532"
    assert archive.config["created"] == "1970-01-01T00:00:00Z"
    assert "history" not in archive.config
    for digest in [entry["digest"], archive.manifest["config"]["digest"]]:
        assert "sha256:" + hashlib.sha256(archive.blob(digest)).hexdigest() == digest


def test_target_goes_into_the_environment(folder: Path, base: Path, tmp_path: Path) -> None:
    (folder / "main.py").write_text("def greet(context, event):\n    return 'hi'\n")
    built = build_function_image(folder, "hello:2", base, tmp_path / "h.tar", target="greet")
    assert "FUNCTION_TARGET=greet" in Archive(built.output).config["config"]["Env"]


def test_same_input_same_digest_and_bytes(folder: Path, base: Path, tmp_path: Path) -> None:
    first = build_function_image(folder, "hello:1", base, tmp_path / "a.tar")
    os.utime(folder / "main.py", (1, 1))  # mtimes and the build's time do not matter
    (folder / "__pycache__" / "y").write_text("more junk")
    second = build_function_image(folder, "hello:1", base, tmp_path / "b.tar")
    assert first.digest == second.digest
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    (folder / "main.py").write_text(HELLO + "# changed\n")
    assert build_function_image(folder, "hello:1", base, tmp_path / "c.tar").digest != first.digest


def test_source_date_epoch_sets_mtimes_and_created(folder: Path, base: Path, tmp_path: Path) -> None:
    built = build_function_image(folder, "hello:1", base, tmp_path / "a.tar", epoch=1700000000)
    archive = Archive(built.output)
    assert archive.config["created"] == "2023-11-14T22:13:20Z"
    assert {m.mtime for m in archive.layer(-1).getmembers()} == {1700000000}


def test_umoci_unpacks_the_archive(folder: Path, base: Path, tmp_path: Path) -> None:
    built = build_function_image(folder, "hello:1", base, tmp_path / "hello.tar")
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(built.output) as tar:
        tar.extractall(layout, filter="data")
    assert "hello:1" in umoci("ls", "--layout", str(layout))
    bundle = tmp_path / "bundle"
    umoci("unpack", "--rootless", "--image", f"{layout}:hello:1", str(bundle))
    rootfs = bundle / "rootfs"
    assert (rootfs / "function" / "main.py").read_text() == HELLO
    assert (rootfs / "function" / "data" / "greeting.txt").is_file()
    assert not (rootfs / "function" / "__pycache__").exists()
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["args"] == ["funcd", "run"]
    assert spec["process"]["cwd"] == "/function"


# ---------------------------------------------------------------------------------------- requirements


def offline_requirements(folder: Path, wheels: Path, *lines: str) -> None:
    (folder / "requirements.txt").write_text(
        f"--no-index\n--find-links {wheels}\n" + "".join(f"{x}\n" for x in lines)
    )


def test_requirements_go_into_their_own_layer_without_what_the_base_has(
    folder: Path, base: Path, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "extra", "2.0")
    make_wheel(wheels, "shared", "1.0")
    offline_requirements(folder, wheels, "extra", "shared")
    built = build_function_image(folder, "hello:1", base, tmp_path / "h.tar")
    archive = Archive(built.output)
    assert len(archive.manifest["layers"]) == len(Archive(base).manifest["layers"]) + 2
    site = names.FUNCTION_SITE.strip("/")
    deps = {m.name for m in archive.layer(-2).getmembers()}
    assert f"{site}/extra.py" in deps and f"{site}/extra-2.0.dist-info/METADATA" in deps
    assert not any("shared" in name for name in deps)  # the base has shared 1.0 already
    assert not any(name.startswith(f"{site}/bin") for name in deps)
    assert "function/requirements.txt" in {m.name for m in archive.layer(-1).getmembers()}
    again = build_function_image(folder, "hello:1", base, tmp_path / "h2.tar")
    assert again.digest == built.digest


def test_requirements_that_conflict_with_the_runtime_fail(folder: Path, base: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "shared", "2.0")
    offline_requirements(folder, wheels, "shared==2.0")
    with pytest.raises(ImageBuildError, match=r"pip could not install .*requirements.txt"):
        build_function_image(folder, "hello:1", base, tmp_path / "h.tar")


def test_pip_failure_exits_1(folder: Path, base: Path, tmp_path: Path) -> None:
    offline_requirements(folder, tmp_path, "no-such-package")
    proc = run_cli("build", str(folder), "--tag", "a:1", "--base", str(base), "-o", str(tmp_path / "a.tar"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("funcd: error: pip could not install")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "a.tar").exists()


def test_default_output_name(folder: Path, base: Path, tmp_path: Path) -> None:
    proc = run_cli("build", str(folder), "--tag", "team/hello:3", "--base", str(base), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "hello-3.oci.tar").is_file()
