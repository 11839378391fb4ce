"""Constructed results with a known answer, written through the project's own store.

Model `net` in three variants on four devices (high, mid, mid, low):
- high: fp16/xnnpack/x2 is the clear winner (1,000 us, everything else >= 2,000 us).
- mid: fp32/xnnpack/x2 (1,000 us) and int8/xnnpack/x2 (1,010 us) are a statistical tie
  (3 repetitions, sd 40 us), so the smaller int8 file wins; fp16/gpu/x1 is the fastest
  on mid-a (500 us) but `delegate_failed` on mid-b, so it can never be the mid choice.
- low: everything >= 3,000 us (a --max-latency-us 1500 leaves it no candidate).
- every device has plain CPU at 1 and 2 threads.
The devices are physical phones measured by one benchmark_model with a fuel gauge and
sensor temperatures; `overrides` changes any column per device (kind, binary, power).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.records import CaseStatus, ErrorType, ResultRow, case_id_for
from harness.store import ResultsStore

MODEL = "net"
RUN_ID = "20261124T120000Z-known"


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


VARIANTS = {  # variant -> (sha256, size_bytes, quantization)
    "fp32": (sha("net_fp32"), 40_000, None),
    "fp16": (sha("net_fp16"), 20_000, "float16"),
    "int8": (sha("net_int8"), 10_000, "full_int8"),
}
DEVICES = {  # serial -> (tier, device_model, soc, ram_bytes, sdk)
    "hi-1": ("high", "Pixel 8 Pro", "Tensor G3", 12_000_000_000, 34),
    "mid-a": ("mid", "A063", "SM7325", 7_500_000_000, 33),
    "mid-b": ("mid", "SM-A546B", "s5e8835", 7_500_000_000, 34),
    "low-1": ("low", "SM-A035F", "T606", 3_000_000_000, 31),
}
OFFSETS = (-40.0, 0.0, 40.0)  # three repetitions around each p50: sd 40 us


def p50_us(serial: str, variant: str, delegate: str, threads: int) -> float | None:
    """The designed median latency; None = delegate_failed."""
    tier = DEVICES[serial][0]
    if delegate == "gpu":
        return 500.0 if serial == "mid-a" else None
    base = {"high": 2000.0, "mid": 1500.0, "low": 3000.0}[tier]
    if tier == "high" and (variant, delegate, threads) == ("fp16", "xnnpack", 2):
        return 1000.0
    if tier == "mid" and delegate == "xnnpack" and threads == 2 and variant in ("fp32", "int8"):
        return 1000.0 if variant == "fp32" else 1010.0
    return base + {"xnnpack": 0.0, "cpu": 400.0}[delegate] + (0.0 if threads == 2 else 200.0)


BINARY = ("android_aarch64_benchmark_model", sha("benchmark_model 2.19"))


def rows(
    run_id: str = RUN_ID, scale: float = 1.0, overrides: Mapping[str, Mapping[str, object]] | None = None
) -> list[ResultRow]:
    started = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    overrides = overrides or {}
    out: list[ResultRow] = []
    for serial, (tier, device_model, soc, ram, sdk) in DEVICES.items():
        for variant, (model_sha, size, quantization) in VARIANTS.items():
            for delegate in ("cpu", "xnnpack", "gpu"):
                for threads in (1, 2):
                    if delegate == "gpu" and (threads, variant) != (1, "fp16"):
                        continue
                    median = p50_us(serial, variant, delegate, threads)
                    for repetition, offset in enumerate(OFFSETS):
                        common: dict[str, Any] = dict(
                            run_id=run_id,
                            repetition=repetition,
                            case_id=case_id_for(serial, model_sha, delegate, threads, ("--num_runs=50",)),
                            started_at=started + dt.timedelta(seconds=len(out)),
                            duration_s=1.0,
                            harness_version="test",
                            adb_server="127.0.0.1:5037",
                            serial=serial,
                            device_kind="physical",
                            device_model=device_model,
                            manufacturer="test",
                            soc=soc,
                            soc_identities=(soc,),
                            abi="arm64-v8a",
                            android_sdk=sdk,
                            ram_bytes=ram,
                            tier=tier,
                            model_name=MODEL,
                            variant=variant,
                            quantization=quantization,
                            model_sha256=model_sha,
                            model_size_bytes=size,
                            delegate=delegate,
                            num_threads=threads,
                            num_runs=50,
                            warmup_runs=1,
                            bench_binary_name=BINARY[0],
                            bench_binary_sha256=BINARY[1],
                        )
                        measured: dict[str, Any] = {
                            "power_method": "fuel_gauge",
                            "temperature_method": "sensor",
                            **overrides.get(serial, {}),
                        }
                        common.update({k: v for k, v in measured.items() if k in common})
                        if median is None:
                            out.append(
                                ResultRow(
                                    **common,
                                    status=CaseStatus.DELEGATE_FAILED,
                                    error_type=ErrorType.DELEGATE_FAILED,
                                    error_message="Failed to apply GPU delegate.",
                                )
                            )
                            continue
                        value = (median + offset) * scale
                        out.append(
                            ResultRow(
                                **common,
                                status=CaseStatus.OK,
                                inference_avg_us=value,
                                inference_std_us=value * 0.05,
                                inference_min_us=value * 0.9,
                                inference_max_us=value * 1.2,
                                inference_p50_us=value,
                                inference_p95_us=value * 1.1,
                                memory_peak_mb=20.0 + size / 1e4,
                                energy_mj_per_inference=value / 1000.0,
                                avg_power_mw=1000.0,
                                power_method=measured["power_method"],
                                temp_start_c=35.0,
                                temp_end_c=37.0,
                                temperature_method=measured["temperature_method"],
                                throttled=False,
                            )
                        )
    return out


def write_results(
    root: Path, run_id: str = RUN_ID, scale: float = 1.0, overrides: Mapping[str, Mapping[str, object]] | None = None
) -> ResultsStore:
    """The rows, and a run.json whose plan names the swept files (under root/../models) as a sweep's does."""
    store = ResultsStore(root)
    by_device: dict[str, list[ResultRow]] = {}
    for row in rows(run_id, scale, overrides):
        by_device.setdefault(row.serial, []).append(row)
    for batch in by_device.values():
        store.append(batch)
    models = [
        {
            "name": MODEL,
            "variant": variant,
            "quantization": quantization,
            "path": str(Path(root).resolve().parent / "models" / f"{MODEL}_{variant}.tflite"),
            "sha256": model_sha,
            "size_bytes": size,
        }
        for variant, (model_sha, size, quantization) in VARIANTS.items()
    ]
    store.write_run_manifest(run_id, {"argv": ["harness", "run"], "plan": {"models": models}})
    return store


def tensor(dtype: str, shape: list[int], name: str, scale: float = 0.0, zero_point: int = 0) -> dict:
    return {
        "name": name,
        "index": 0,
        "shape": shape,
        "shape_signature": [-1, *shape[1:]],
        "dtype": dtype,
        "scale": scale,
        "zero_point": zero_point,
    }


def write_manifest(folder: Path, int8_drop: float = 0.02) -> Path:
    """A convert manifest for the three files: int8 has int8 I/O and `int8_drop` accuracy drop."""
    variants = {}
    for variant, (model_sha, size, quantization) in VARIANTS.items():
        quantized = variant == "int8"
        io = ("int8", 0.0039, -128) if quantized else ("float32", 0.0, 0)
        drop = int8_drop if quantized else 0.0
        variants[variant] = {
            "variant": variant,
            "quantization": quantization,
            "status": "ok",
            "file": f"{MODEL}_{variant}.tflite",
            "sha256": model_sha,
            "size_bytes": size,
            "inputs": [tensor(io[0], [1, 8, 8, 1], "serving_default_x:0", io[1], io[2])],
            "outputs": [tensor(io[0], [1, 10], "StatefulPartitionedCall:0", io[1], io[2])],
            "accuracy": {"accuracy_drop": drop, "accuracy": 0.97 - drop, "reference_accuracy": 0.97},
            "accepted": True,
            "reason": None,
        }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"schema_version": 1, "models": {MODEL: {"model_name": MODEL, "variants": variants}}}))
    return path
