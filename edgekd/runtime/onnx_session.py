"""The one ONNX Runtime session loader (Polygraphy's `SessionFromOnnx`): every caller that runs an ONNX file —
the runtime, the INT8 gate, the thresholds an artifact ships, the benchmarks — opens it here, so providers,
threads and the graph-optimisation rule change in one place."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
GPU_HINT = ("for CUDA install the GPU build in place of the CPU one: pip uninstall onnxruntime && "
            "pip install 'edgekd[gpu]' (onnxruntime-gpu)")
GRAPH_OPTIMIZATIONS = ("auto", "all", "basic", "none")


def choose_providers(device: str, available: list[str], path) -> list[str]:
    """Providers for `device` ("auto": CUDA when onnxruntime-gpu offers it, else CPU); missing ones are an error."""
    if device == "auto":
        return [p for p in PROVIDERS["cuda"] if p in available] or ["CPUExecutionProvider"]
    wanted = PROVIDERS.get(device.split(":")[0])
    if wanted is None:
        raise EdgekdError(f"{path}: unknown device {device!r} for ONNX Runtime (cpu, cuda, tensorrt, auto)")
    if wanted[0] not in available:
        raise EdgekdError(f"{path}: device {device!r} needs ONNX Runtime's {wanted[0]}, but the installed onnxruntime "
                          f"offers only {', '.join(available)}; {GPU_HINT}")
    return wanted


def tensorrt_numerics(session) -> bool:
    """True for TensorRT-targeted symmetric Q/DQ files (edgekd metadata `int8_form` = qdq-s8s8)."""
    return session.get_modelmeta().custom_metadata_map.get("edgekd.int8_form") == "qdq-s8s8"


def session_from_onnx(path: str | Path, *, providers: list[str] | None = None, device: str = "cpu",
                      threads: int | None = None, inter_op_threads: int | None = None,
                      graph_optimization: str = "auto", spin_between_runs: bool = True):
    """An `onnxruntime.InferenceSession` for `path`; every failure is one EdgekdError naming the file.

    providers: explicit ONNX Runtime providers (checked against the installed build), else chosen for `device`.
    threads: intra-op threads (None: ONNX Runtime's default). graph_optimization: "all", "basic", "none", or
    "auto": everything, except that TensorRT-targeted S8S8 Q/DQ files on the CPU provider run their Q/DQ ops as
    written (basic optimisation) — ORT's fused x86 S8S8 kernels saturate 16-bit intermediates on CPUs without VNNI
    (measured on the test model: mean cosine to the fake-quant reference 0.964 fused vs 0.9997 as written), which
    would judge the CPU rather than the file TensorRT will run. spin_between_runs=False: intra-op threads stop
    spinning as soon as a run returns (they still spin between the ops of a run), for callers that alternate many
    small runs with numpy work on the same cores: MTCNN's pyramid, where threads left spinning took half of a
    2-core machine from the numpy between the networks, while threads that never spin pay a wake-up per op.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: no such file")
    if graph_optimization not in GRAPH_OPTIMIZATIONS:
        raise EdgekdError(f"graph_optimization {graph_optimization!r}: one of {', '.join(GRAPH_OPTIMIZATIONS)}")
    available = ort.get_available_providers()
    if providers:
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise EdgekdError(f"{path}: provider {unknown[0]} not available (available: {', '.join(available)})")
    else:
        providers = choose_providers(device, available, path)
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}

    def build(level):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        if inter_op_threads:
            opts.inter_op_num_threads = int(inter_op_threads)
        if not spin_between_runs:
            opts.add_session_config_entry("session.force_spinning_stop", "1")
        opts.graph_optimization_level = levels[level]
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind exception types
            raise EdgekdError(f"{path}: ONNX Runtime cannot load it ({str(e).strip().splitlines()[0][:200]})") from e

    if graph_optimization != "auto":
        return build(graph_optimization)
    session = build("all")
    if providers[0] == "CPUExecutionProvider" and tensorrt_numerics(session):
        session = build("basic")
    return session
