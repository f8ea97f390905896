"""Images (issue 9): ``funcd build`` of a sample, cold and warm: time and image size.

Needs the repo's venv, mmdebstrap and umoci (``make image`` builds the runtime image first when it is
not cached; its time is reported apart). See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import common

NAME = "image"
DESCRIPTION = "funcd build of a sample, cold and warm: time and image size"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("image")
    g.add_argument("--img-sample", default="hello-http", help="the sample to build (default hello-http)")
    g.add_argument(
        "--img-requirement",
        default="humanize==4.12.3",
        help="a requirement added to the sample's copy, so that pip has work to do ('' for none)",
    )
    g.add_argument("--img-warm-rounds", type=int, default=3, help="warm builds (default 3)")


def _images() -> Any:
    spec = importlib.util.spec_from_file_location("funcd_images_build", common.ROOT / "images" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _build(folder: Path, base: Path, out: Path, env: dict[str, str]) -> tuple[float, str]:
    funcd = common.ROOT / ".venv" / "bin" / "funcd"
    cmd = [str(funcd), "build", str(folder), "--tag", "bench:1", "--base", str(base), "-o", str(out)]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"funcd build failed: {proc.stderr.strip()}")
    return elapsed, proc.stdout.split()[2]  # "<output>: <name> <digest> (...)"


def _layer_sizes(archive: Path, base_layers: int) -> list[int]:
    import json

    with tarfile.open(archive) as tar:

        def read(name: str) -> Any:
            f = tar.extractfile(name)
            assert f is not None
            return json.loads(f.read())

        index = read("index.json")
        manifest = read("blobs/" + index["manifests"][0]["digest"].replace(":", "/"))
    return [layer["size"] for layer in manifest["layers"][base_layers:]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    images = _images()
    machine = common.machine_info()
    started = time.monotonic()
    cached = Path(images.images_dir() / f"funcd-runtime-{images.runtime_key()}.oci.tar").is_file()
    base = images.runtime_image_archive()
    runtime_s = time.monotonic() - started
    import json

    with tarfile.open(base) as tar:
        f = tar.extractfile("index.json")
        assert f is not None
        digest = json.loads(f.read())["manifests"][0]["digest"]
        m = tar.extractfile("blobs/" + digest.replace(":", "/"))
        assert m is not None
        base_manifest = json.loads(m.read())
    base_layers = len(base_manifest["layers"])
    work = Path(tempfile.mkdtemp(prefix="funcd-bench-image-"))
    try:
        folder = work / args.img_sample
        shutil.copytree(common.ROOT / "samples" / args.img_sample, folder)
        if args.img_requirement:
            (folder / "requirements.txt").write_text(args.img_requirement + "\n")
        env = {**os.environ, "PIP_CACHE_DIR": str(work / "pip-cache")}  # cold: an empty pip cache
        cold_s, cold_digest = _build(folder, base, work / "cold.tar", env)
        warm = [_build(folder, base, work / f"warm{i}.tar", env) for i in range(args.img_warm_rounds)]
        result = {
            "machine": machine,
            "command": "bench/run.py --only image",
            "sample": args.img_sample,
            "requirement": args.img_requirement,
            "runtime": {
                "cached": cached,
                "seconds": round(runtime_s, 1),
                "archive_bytes": base.stat().st_size,
                "layers": [x["size"] for x in base_manifest["layers"]],
            },
            "cold": {"seconds": round(cold_s, 2), "digest": cold_digest},
            "warm": {"seconds": [round(s, 2) for s, _ in warm], "digests": sorted({d for _, d in warm})},
            "archive_bytes": (work / "cold.tar").stat().st_size,
            "new_layers_bytes": _layer_sizes(work / "cold.tar", base_layers),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = common.loadavg()
    return result


def markdown(result: dict[str, Any]) -> str:
    m, rt = result["machine"], result["runtime"]
    warm = result["warm"]["seconds"]
    same = result["warm"]["digests"] == [result["cold"]["digest"]]
    mb = 1e6
    req = f" plus `{result['requirement']}` in requirements.txt" if result["requirement"] else ""
    lines = [
        f"Measured {m['date_utc']} with `.venv/bin/python {result['command']}` "
        "(raw data: `bench/results/image.json`).",
        "",
        f"- Machine: {m['cores']} cores, {m['memory_mib']} MiB RAM, {m['cpu_model']}; "
        f"Linux {m['kernel']}; Python {m['python']}",
        f"- Load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}.",
        f"- Runtime image: {'cached' if rt['cached'] else 'built in this run'} "
        f"({rt['seconds']} s), {rt['archive_bytes'] / mb:.1f} MB archive, compressed layers "
        + " + ".join(f"{x / mb:.1f} MB" for x in rt["layers"])
        + ".",
        "",
        f"`funcd build samples/{result['sample']}`{req}:",
        "",
        common.md_table(
            ["build", "time (s)", "archive (MB)", "function layers (KB, compressed)", "same digest"],
            [
                [
                    "cold (empty pip cache)",
                    result["cold"]["seconds"],
                    f"{result['archive_bytes'] / mb:.1f}",
                    " + ".join(f"{x / 1e3:.1f}" for x in result["new_layers_bytes"]),
                    "",
                ],
                [
                    f"warm (median of {len(warm)})",
                    sorted(warm)[len(warm) // 2] if warm else "-",
                    f"{result['archive_bytes'] / mb:.1f}",
                    "",
                    "yes" if same else f"NO: {result['warm']['digests']}",
                ],
            ],
        ),
    ]
    return "\n".join(lines)
