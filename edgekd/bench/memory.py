"""Memory figures of a benchmark run: GPU memory of this process (NVML), torch's CUDA peak (only when torch is the
runtime), Jetson unified memory (/proc/meminfo or tegrastats) and the CPU peak RSS.

A figure that cannot be measured is None, with the reason beside it (`gpu_bytes_reason`), never a crash: JetPack 6's
NVML answers NOT_SUPPORTED for memory and process queries, and inside a container without --pid=host NVML's PIDs
(host namespace) never equal os.getpid(), so GPU memory falls back to the device's used-memory delta since the start,
labelled `gpu_bytes_method: nvml-device-used-delta` (it counts every process on the device).

Never imports torch: torch's figure is read only when torch is already loaded by the runtime.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from edgekd.runtime.tensorrt.sidecar import TEGRA_RELEASE


def is_jetson() -> bool:
    return TEGRA_RELEASE.exists()


def rss_peak_bytes() -> int:
    """Peak resident set size of this process: VmHWM of /proc/self/status (reset at exec, unlike ru_maxrss, which
    Linux carries over from the parent, so a benchmark subprocess would report its parent's peak), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def torch_peak_bytes() -> int | None:
    """torch's peak CUDA allocation summed over devices (a runtime on cuda:N allocates on N, not on the current
    device), only if torch is already imported and CUDA was initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        return int(sum(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count())))
    except Exception:  # noqa: BLE001 - a broken CUDA setup means "not measurable", not a failed benchmark
        return None


def meminfo_used_bytes(path: str = "/proc/meminfo") -> int | None:
    """System memory in use (MemTotal - MemAvailable): on Jetson CPU and GPU share it (unified memory)."""
    try:
        fields = {}
        for line in Path(path).read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name.strip()] = int(rest.split()[0]) * 1024
        return fields["MemTotal"] - fields["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        return None


_TEGRA_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")


def parse_tegrastats_ram(line: str) -> int | None:
    """`RAM 2345/7764MB ...` -> used bytes."""
    m = _TEGRA_RAM.search(line)
    return int(m.group(1)) * 1024 * 1024 if m else None


class _Nvml:
    """GPU memory used by this process, summed over devices: NVML's per-process figure where it lists our PID, else
    the device-level used-memory delta since start; (None, None) with `reason` where NVML cannot tell."""

    def __init__(self) -> None:
        self.ok, self.reason, self.baseline = False, "NVML not available (no NVIDIA driver or nvidia-ml-py)", None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nv = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.ok = True
        except Exception:  # noqa: BLE001 - missing library/driver: GPU memory is not measurable here
            return
        self.reason = "NVML lists no GPU memory for this process"
        self.baseline = self._device_used()

    def _device_used(self) -> int | None:
        try:
            return sum(int(self._nv.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles)
        except Exception as e:  # noqa: BLE001 - NVMLError: JetPack 6 answers NOT_SUPPORTED
            self.reason = f"NVML memory queries: {e} (on a Jetson, see unified_bytes)"
            return None

    def process_bytes(self) -> tuple[int | None, str | None]:
        """(bytes, method): method "nvml-process" or "nvml-device-used-delta"; (None, None) when unknown."""
        if not self.ok:
            return None, None
        pid, total, seen, listed = os.getpid(), 0, False, False
        for h in self._handles:
            try:
                procs = self._nv.nvmlDeviceGetComputeRunningProcesses(h)
            except Exception as e:  # noqa: BLE001
                self.reason = f"NVML process queries: {e}"
                continue
            listed |= bool(procs)
            for p in procs:
                if p.pid == pid and p.usedGpuMemory is not None:
                    total += int(p.usedGpuMemory)
                    seen = True
        if seen:
            return total, "nvml-process"
        if listed and self.baseline is not None:  # processes run, none with our PID: another PID namespace
            used = self._device_used()
            if used is not None:
                return max(0, used - self.baseline), "nvml-device-used-delta"
        return None, None

    def close(self) -> None:
        if self.ok:
            try:
                self._nv.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass


class MemorySampler:
    """Samples the GPU/unified figures in a background thread while the benchmark runs, keeping the peaks.

    Usage: `with MemorySampler() as m: ...; m.result()` -> the contract's bench `memory` block.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._nvml = _Nvml()
        self._jetson = is_jetson()
        self.gpu_peak: int | None = None
        self.gpu_method: str | None = None
        self.unified_peak: int | None = None
        self.unified_baseline = meminfo_used_bytes() if self._jetson else None
        self._sources: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tegra: subprocess.Popen | None = None
        self._tegra_thread: threading.Thread | None = None

    @property
    def unified_source(self) -> str | None:
        """Which readings the unified peak comes from: "/proc/meminfo", "tegrastats" or both ("+")."""
        return "+".join(sorted(self._sources)) or None

    def _max(self, a: int | None, b: int | None) -> int | None:
        return b if a is None else a if b is None else max(a, b)

    def sample(self) -> None:
        used, method = self._nvml.process_bytes()
        if used is not None and (self.gpu_peak is None or used > self.gpu_peak):
            self.gpu_peak, self.gpu_method = used, method
        if self._jetson:  # always, tegrastats or not: its lines may arrive late or never (buffered pipe)
            used = meminfo_used_bytes()
            if used is not None:
                self._sources.add("/proc/meminfo")
                self.unified_peak = self._max(self.unified_peak, used)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def _tegra_loop(self) -> None:
        assert self._tegra is not None and self._tegra.stdout is not None
        for line in self._tegra.stdout:
            used = parse_tegrastats_ram(line)
            if used is not None:
                self._sources.add("tegrastats")
                self.unified_peak = self._max(self.unified_peak, used)

    def __enter__(self) -> "MemorySampler":
        if self._jetson and shutil.which("tegrastats"):
            # piped, tegrastats' stdio is block-buffered: stdbuf -oL makes it write each line as it is sampled
            line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
            try:
                self._tegra = subprocess.Popen(
                    [*line_buffered, "tegrastats", "--interval", str(max(10, int(self.interval_s * 1000)))],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                )
                self._tegra_thread = threading.Thread(target=self._tegra_loop, daemon=True)
                self._tegra_thread.start()
            except OSError:
                self._tegra = None
        self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._tegra is not None:
            self._tegra.terminate()
            try:
                self._tegra.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._tegra.kill()
                self._tegra.wait()
        if self._tegra_thread is not None:  # the pipe is closed now: the reader ends after the last line
            self._tegra_thread.join(timeout=2)
        self._nvml.close()

    def result(self) -> dict:
        return {
            "gpu_bytes": self.gpu_peak,
            "gpu_bytes_method": self.gpu_method,
            "gpu_bytes_reason": None if self.gpu_peak is not None else self._nvml.reason,
            "torch_peak_bytes": torch_peak_bytes(),
            "rss_peak_bytes": rss_peak_bytes(),
            "unified_bytes": self.unified_peak,
            "unified_baseline_bytes": self.unified_baseline,
            "unified_source": self.unified_source,
        }
