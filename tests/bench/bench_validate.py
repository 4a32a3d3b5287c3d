"""Static validation of a full-size Kimi-K2.6 rank-32 adapter (every module, per-expert keys: ~140 thousand
tensors, a ~20 MB header, ~41 GB of weights) from a sparse file in the on-disk blob store.

This process writes the config and the sparse weights file; each measurement then runs in a fresh child
process, so its peak RSS (VmHWM) is the work's own: the validator (`validate_job`: ranged reads of the
config and the header, parsing, every rule) through a blob store that counts the bytes it reads, and, as
the baseline in the same run, the floor of any header-only check: read the header and `json.loads` it.
(The reference parser, `safetensors.safe_open`, mmaps the whole file: with this machine's heuristic
overcommit a 41 GB mapping fails with ENOMEM, so it cannot be the baseline here.) Prints wall time (goal < 2 s), bytes read against the file size (goal < 0.1 %)
and peak RSS; the last line is one JSON object.

A second validator case puts the worst patterns in every pattern field of the config: regexes that
backtrack for minutes in Python's `re` (`((.+))+x`, `(.|.)+x`, ...) as target_modules and
exclude_modules, and 64 such keys each in rank_pattern and alpha_pattern, one of which matches every
module; they run on RE2 (shared/patterns.py), so the same adapter passes in about the same time.

Run: `python -m tests.bench.bench_validate [--repeats 3]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.bench.common import CPU_NOTE, emit, exit_on_sigterm, peak_rss_mib, print_table

CONFIG_KEY = "orgs/acme/files/file-cfg"
WORST_PATTERNS_CONFIG_KEY = "orgs/acme/files/file-cfg-patterns"
WEIGHTS_KEY = "orgs/acme/files/file-w"
KIMI_JOB = {"model": "moonshotai/Kimi-K2.6", "slug": "kimi-k2-6"}
GOAL_SECONDS, GOAL_FRACTION = 2.0, 0.001


# -- the parent: write the adapter, run the children, print -------------------------------------
def worst_patterns_config() -> bytes:
    """The bench's config with a catastrophic-for-`re` regex in every pattern field; still valid."""
    from tests.unit.validator.adapters import kimi_config
    from tests.unit.validator.pathological import CATASTROPHIC

    every_projection = r"(?:(?:.+))+(?:_proj|_mqa)"  # all of Kimi's Linears; exponential in `re` on the rest
    keys = [f"{pattern}{i}" for i in range(63) for pattern in CATASTROPHIC][:63] + [r"(.|.)+_(?:proj|mqa)"]
    return kimi_config(target_modules=every_projection, exclude_modules=CATASTROPHIC[-1],
                       rank_pattern=dict.fromkeys(keys, 32), alpha_pattern=dict.fromkeys(keys, 64))


def write_adapter(root: Path) -> tuple[int, int]:
    """The configs and the sparse weights file in `root`'s on-disk store: (tensors, file bytes)."""
    from tests.integration.validator.test_kimi_full_size import write_sparse
    from tests.unit.validator.adapters import kimi_config, kimi_shapes

    shapes = kimi_shapes(rank=32)
    (root / "objects" / CONFIG_KEY).parent.mkdir(parents=True, exist_ok=True)
    (root / "objects" / CONFIG_KEY).write_bytes(kimi_config())
    (root / "objects" / WORST_PATTERNS_CONFIG_KEY).write_bytes(worst_patterns_config())
    return len(shapes), write_sparse(SimpleNamespace(root=root), WEIGHTS_KEY, shapes)


def child(mode: str, root: Path, repeats: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "tests.bench.bench_validate", "--child", mode, "--root", str(root),
                          "--repeats", str(repeats)], check=False, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} child failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(repeats: int = 3, workdir: str | None = None) -> dict:
    print(f"static validation of a full-size Kimi-K2.6 rank-32 adapter (sparse file, on-disk store); {CPU_NOTE}",
          flush=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench-validate-") as tmp:
        root = Path(tmp) / "blobs"
        started = time.perf_counter()
        tensors, file_bytes = write_adapter(root)
        header_bytes = int.from_bytes((root / "objects" / WEIGHTS_KEY).open("rb").read(8), "little")
        print(f"{tensors} tensors, header {header_bytes / 1e6:.1f} MB, file {file_bytes / 1e9:.1f} GB "
              f"(written in {time.perf_counter() - started:.1f} s)", flush=True)
        validator = child("validator", root, repeats)
        patterns = child("patterns", root, repeats)
        floor = child("floor", root, repeats)
    rows = [[path, result["first_s"], result["median_s"], result["bytes_read"], result["bytes_read"] / file_bytes * 100,
             result["rss_before_MiB"], result["peak_rss_MiB"]]
            for path, result in (("validator (validate_job)", validator),
                                 ("validator, worst-case patterns in every field", patterns))]
    rows.append(["floor (read header + json.loads)", floor["first_s"], floor["median_s"], "-",
                 "-", floor["rss_before_MiB"], floor["peak_rss_MiB"]])
    print_table(["path", "first s", f"median of {repeats} s", "bytes read", "% of file", "RSS before MiB",
                 "peak RSS MiB"], rows)
    summary = {"seconds": validator["median_s"], "first_seconds": validator["first_s"],
               "bytes_read": validator["bytes_read"], "file_bytes": file_bytes,
               "read_fraction": validator["bytes_read"] / file_bytes, "peak_rss_MiB": validator["peak_rss_MiB"],
               "rss_before_MiB": validator["rss_before_MiB"], "tensors": tensors, "header_bytes": header_bytes,
               "floor_seconds": floor["median_s"], "floor_peak_rss_MiB": floor["peak_rss_MiB"],
               "over_floor": validator["median_s"] / floor["median_s"],
               "worst_patterns_seconds": patterns["median_s"], "worst_patterns_peak_rss_MiB": patterns["peak_rss_MiB"],
               "worst_patterns_over_plain": patterns["median_s"] / validator["median_s"]}
    print(f"{summary['seconds']:.2f} s (goal < {GOAL_SECONDS}), read {summary['read_fraction']:.5%} of the file "
          f"(goal < {GOAL_FRACTION:.1%}), {summary['over_floor']:.1f}x the floor's time; worst-case patterns "
          f"{summary['worst_patterns_seconds']:.2f} s (goal < {GOAL_SECONDS}), "
          f"{summary['worst_patterns_over_plain']:.2f}x the plain config's")
    return emit(summary)


# -- the children: one measurement each, in a fresh process -------------------------------------
async def measure_validator(root: Path, repeats: int, config_key: str = CONFIG_KEY) -> dict:
    from services.validator.handler import Validator, validate_job
    from shared.catalogue.catalogue import load_catalogue
    from shared.stores.local_blobs import LocalBlobStore
    from tests.integration.validator.conftest import CountingBlobs, job

    catalogue = load_catalogue()
    catalogue.get(KIMI_JOB["model"]).shapes  # noqa: B018 -- derive the shapes before the clock starts, as a service would
    blobs = CountingBlobs(LocalBlobStore(root))
    validator = Validator(bus=None, blobs=blobs, catalogue=catalogue, source="bench")
    rss_before, seconds, reads = peak_rss_mib(), [], []
    for index in range(repeats):
        blobs.bytes_read = 0
        started = time.perf_counter()
        problems = await validate_job(validator, job(f"val-{index}", config_key=config_key, weights_key=WEIGHTS_KEY,
                                                     **KIMI_JOB))
        seconds.append(time.perf_counter() - started)
        reads.append(blobs.bytes_read)
        if problems:
            raise RuntimeError(f"the adapter should pass: {problems.result_message()}")
    return {"first_s": seconds[0], "median_s": statistics.median(seconds), "bytes_read": reads[0],
            "rss_before_MiB": rss_before, "peak_rss_MiB": peak_rss_mib()}


def measure_floor(root: Path, repeats: int) -> dict:
    """The floor of any header-only check: read the 8-byte length and the header, `json.loads` it, list shapes."""
    rss_before, seconds = peak_rss_mib(), []
    for _ in range(repeats):
        started = time.perf_counter()
        with open(root / "objects" / WEIGHTS_KEY, "rb") as weights:
            header = json.loads(weights.read(int.from_bytes(weights.read(8), "little")))
        shapes = {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}
        seconds.append(time.perf_counter() - started)
        del header, shapes
    return {"first_s": seconds[0], "median_s": statistics.median(seconds), "rss_before_MiB": rss_before,
            "peak_rss_MiB": peak_rss_mib()}


def run_child(mode: str, root: Path, repeats: int) -> None:
    if mode == "floor":
        result = measure_floor(root, repeats)
    else:
        config_key = CONFIG_KEY if mode == "validator" else WORST_PATTERNS_CONFIG_KEY
        result = asyncio.run(measure_validator(root, repeats, config_key))
    print(json.dumps(result), flush=True)


@pytest.mark.bench
def test_validate_bench():
    result = run(repeats=1)
    assert {"seconds", "bytes_read", "file_bytes", "read_fraction", "peak_rss_MiB", "worst_patterns_seconds"} <= \
        result.keys()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="where the sparse file goes (default: the system temp dir)")
    parser.add_argument("--child", choices=["validator", "patterns", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    exit_on_sigterm()
    if args.child:
        run_child(args.child, args.root, args.repeats)
    else:
        run(args.repeats, args.workdir)


if __name__ == "__main__":
    main()
