"""The one way to open a deployed detector: `open_detector(path)` -> an Mtcnn whose networks run on ONNX Runtime or
TensorRT (no torch).

`path` is the folder `edgekd export --detector mtcnn --out DIR` wrote (its FP32 ONNX files), or any one member file
naming the variant for all three networks: P-Net's FP16 ONNX file -> the three FP16 ONNX files, O-Net's FP16
engine -> the three FP16 engines (edgekd.artifacts spells the names). Each file must say it is that network of that
detector (ONNX metadata `edgekd.kind` = detector, `edgekd.network`; an engine's sidecar `detector` block), so a face
model or another network is refused by name.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from edgekd.artifacts import ENGINE_SUFFIXES, artifact_kind, detector_stem, engine_path, family, onnx_path, variant_of
from edgekd.detect.mtcnn import NETWORKS, Mtcnn, MtcnnSettings
from edgekd.errors import EdgekdError

DETECTOR = "mtcnn"
OUTPUTS = {"pnet": ("reg", "prob"), "rnet": ("reg", "prob"), "onet": ("reg", "landmarks", "prob")}
EXPORT_HINT = f"edgekd export --detector {DETECTOR} --out DIR"
PYRAMID_WORKERS = 2  # P-Net runs in parallel on the CPU: the largest level about balances all the others


def detector_files(path: str | Path) -> tuple[str, dict[str, Path]]:
    """("onnx" | "engine", network -> file) for a detector folder or member file; missing files are an error."""
    path = Path(path)
    if path.is_dir():
        kind, files = "onnx", {n: onnx_path(path / detector_stem(DETECTOR, n)) for n in NETWORKS}
    elif path.is_file():
        kind = artifact_kind(path)
        base = family(path)
        prefix = f"{DETECTOR}-"
        if kind == "checkpoint" or not base.name.startswith(prefix) or base.name[len(prefix):] not in NETWORKS:
            raise EdgekdError(f"{path}: not an MTCNN detector file (expected a folder or "
                              f"{DETECTOR}-{{{','.join(NETWORKS)}}}[.<precision>].onnx|{ENGINE_SUFFIXES[0]}, "
                              f"as {EXPORT_HINT} writes)")
        if kind == "engine":
            precision = path.name[: -len(path.suffix)].rsplit(".", 1)[-1]
            files = {n: engine_path(base.with_name(detector_stem(DETECTOR, n)), precision) for n in NETWORKS}
        else:
            v = variant_of(path)
            files = {n: onnx_path(base.with_name(detector_stem(DETECTOR, n)), v) for n in NETWORKS}
    else:
        raise EdgekdError(f"{path}: no such detector folder or file ({EXPORT_HINT})")
    missing = [f.name for f in files.values() if not f.is_file()]
    if missing:
        raise EdgekdError(f"{path}: not a complete MTCNN detector (missing {', '.join(missing)}; {EXPORT_HINT})")
    return kind, files


def _check_identity(path: Path, meta: dict | None, network: str) -> None:
    meta = meta or {}
    if meta.get("kind") != "detector" or meta.get("detector") != DETECTOR:
        raise EdgekdError(f"{path}: not an MTCNN detector network (no edgekd detector metadata; {EXPORT_HINT})")
    if meta.get("network") != network:
        raise EdgekdError(f"{path}: is the {meta.get('network')} network, expected {network}")


def _onnx_network(path: Path, network: str, device: str, threads: int | None):
    from edgekd.runtime.onnx_session import session_from_onnx

    sess = session_from_onnx(path, device=device, threads=threads, inter_op_threads=1 if threads else None,
                             spin_between_runs=False)  # small runs between numpy steps
    meta = sess.get_modelmeta().custom_metadata_map
    _check_identity(path, {k[len("edgekd."):]: v for k, v in meta.items() if k.startswith("edgekd.")}, network)
    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    if len(inputs) != 1 or sorted(outputs) != sorted(OUTPUTS[network]):
        raise EdgekdError(f"{path}: inputs {inputs} / outputs {outputs} are not MTCNN {network}'s")
    name, order = inputs[0], list(OUTPUTS[network])
    return (lambda x: sess.run(order, {name: x})), None


def _engine_network(path: Path, network: str, device: str):
    from edgekd.runtime.tensorrt.engine import EngineRunner
    from edgekd.runtime.tensorrt.sidecar import read_sidecar

    side = read_sidecar(path)
    det = side.get("detector") or {}
    _check_identity(path, {"kind": "detector" if det else None, "detector": det.get("name"),
                           "network": det.get("network")}, network)
    runner = EngineRunner(path, device=device)
    (inp,) = runner.inputs
    order = list(OUTPUTS[network])
    if sorted(t["name"] for t in runner.outputs) != sorted(order):
        runner.close()
        raise EdgekdError(f"{path}: outputs {[t['name'] for t in runner.outputs]} are not MTCNN {network}'s")

    def run(x):
        out = runner({inp["name"]: x.astype(inp["dtype"], copy=False)})
        return tuple(out[o] for o in order)

    return run, runner


class DeployedMtcnn(Mtcnn):
    """An Mtcnn over deployed files; `files` says which, `kind` "onnx" or "engine"; close() frees engines."""

    def __init__(self, networks, settings, files: dict[str, Path], kind: str, runners: list, level_workers: int = 1):
        super().__init__(networks, settings, level_workers=level_workers)
        self.files, self.kind, self._runners = files, kind, runners

    def close(self) -> None:
        super().close()
        for r in self._runners:
            r.close()
        self._runners = []

    def __enter__(self) -> "DeployedMtcnn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        return {"detector": DETECTOR, "runtime": "tensorrt" if self.kind == "engine" else "onnxruntime",
                "files": {n: str(p) for n, p in self.files.items()}, "settings": self.settings.to_json(),
                "pyramid_workers": self.level_workers}


def open_detector(path: str | Path, *, device: str = "cpu", threads: int | None = None,
                  settings: MtcnnSettings | None = None, **overrides) -> DeployedMtcnn:
    """The deployed MTCNN at `path` (see the module docstring). ONNX files run on `device` ("cpu", "cuda"), engines
    on the CUDA device (default cuda:0). Engines' R-/O-Net batches are split at their profile maximum. On the CPU
    the pyramid levels run on PYRAMID_WORKERS threads that share the `threads` (default: all cores), as P-Net's
    small convolutions leave a second thread of one run half idle (edgekd.detect.mtcnn.Mtcnn)."""
    kind, files = detector_files(path)
    settings = settings or MtcnnSettings.make(**overrides)
    cores = threads or os.cpu_count() or 1
    workers = min(PYRAMID_WORKERS, cores) if kind == "onnx" and device == "cpu" else 1
    nets, runners = {}, []
    try:
        for n, f in files.items():
            if kind == "engine":
                fn, runner = _engine_network(f, n, device if device.startswith("cuda") else "cuda:0")
                runners.append(runner)
                if n != "pnet":
                    hi = runner.inputs[0]["profile"][2][0]
                    cap = hi if settings.max_batch is None else min(hi, settings.max_batch)
                    settings = dataclasses.replace(settings, max_batch=cap)
            else:
                per_run = max(1, cores // workers) if n == "pnet" and workers > 1 else threads
                fn, _ = _onnx_network(f, n, device, per_run)
            nets[n] = fn
    except BaseException:
        for r in runners:
            r.close()
        raise
    return DeployedMtcnn(nets, settings, files, kind, runners, level_workers=workers)
