"""Rows shaped like published benchmark numbers of two real phones, written through the store.

A 2018 and a 2019 flagship as another tool would store them: Snapdragon 845 with 4 GB
(Pixel 3, board `sdm845`) and Snapdragon 855 with 6 GB (OnePlus 7, board `msmnile`),
both Android 10 (no ro.soc.model), plain CPU at 4 threads, GPU and NNAPI, one measurement
each, and no tier stored: derive classifies them. Each model's latencies are designed so
that the fastest configuration is the same on both phones and at least 20 % ahead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from harness.records import CaseStatus, ErrorType, ResultRow, case_id_for
from harness.store import ResultsStore

RUN_ID = "20190601T000000Z-published"
PHONES = {  # serial -> (device_model, manufacturer, soc as stored, ram_bytes, sdk)
    "pixel3": ("Pixel 3", "Google", "sdm845", 3_700_000_000, 29),
    "oneplus7": ("GM1901", "OnePlus", "msmnile", 5_600_000_000, 29),
}
FAILED = "delegate_failed"
# model -> delegate -> p50 in ms per phone (pixel3, oneplus7); FAILED = the delegate failed there.
LATENCIES_MS: dict[str, dict[str, tuple[float | str, float | str]]] = {
    # the reported crash: CPU fastest, NNAPI slower, GPU not measured
    "mobilenet_v1": {"cpu": (30.0, 22.0), "nnapi": (45.0, 35.0)},
    # CPU slowest: GPU, then NNAPI, then CPU
    "mobilenet_v2": {"cpu": (40.0, 30.0), "gpu": (10.0, 8.0), "nnapi": (20.0, 16.0)},
    # NNAPI first; GPU slower than CPU, so no app should fall back to it
    "inception_v3": {"cpu": (400.0, 300.0), "gpu": (600.0, 450.0), "nnapi": (200.0, 150.0)},
    # only plain CPU measured
    "resnet50": {"cpu": (500.0, 380.0)},
    # the GPU delegate fails on both phones: never in a chain
    "efficientnet_lite0": {"cpu": (60.0, 45.0), "gpu": (FAILED, FAILED), "nnapi": (30.0, 24.0)},
    # GPU and NNAPI close (but > 5 % apart), CPU far behind
    "deeplab_v3": {"cpu": (900.0, 700.0), "gpu": (120.0, 95.0), "nnapi": (150.0, 120.0)},
}
THREADS = 4


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha(model: str) -> str:
    return sha(f"{model}.tflite")


def rows() -> list[ResultRow]:
    started = dt.datetime(2019, 6, 1, tzinfo=dt.UTC)
    out: list[ResultRow] = []
    for index, (serial, (device_model, manufacturer, soc, ram, sdk)) in enumerate(PHONES.items()):
        for model, by_delegate in LATENCIES_MS.items():
            for delegate, figures in by_delegate.items():
                figure = figures[index]
                common: dict[str, Any] = dict(
                    run_id=RUN_ID,
                    repetition=0,
                    case_id=case_id_for(serial, file_sha(model), delegate, THREADS, ()),
                    started_at=started + dt.timedelta(seconds=len(out)),
                    duration_s=5.0,
                    harness_version="published",
                    adb_server="127.0.0.1:5037",
                    serial=serial,
                    device_model=device_model,
                    manufacturer=manufacturer,
                    soc=soc,
                    abi="arm64-v8a",
                    android_sdk=sdk,
                    ram_bytes=ram,
                    tier=None,
                    model_name=model,
                    variant="fp32",
                    model_sha256=file_sha(model),
                    model_size_bytes=4_000_000,
                    delegate=delegate,
                    num_threads=THREADS,
                    num_runs=50,
                    warmup_runs=1,
                    bench_binary_sha256=sha("android_aarch64_benchmark_model"),
                )
                if figure == FAILED:
                    out.append(
                        ResultRow(
                            **common,
                            status=CaseStatus.DELEGATE_FAILED,
                            error_type=ErrorType.DELEGATE_FAILED,
                            error_message="Failed to apply GPU delegate.",
                        )
                    )
                    continue
                us = float(figure) * 1000.0
                out.append(
                    ResultRow(
                        **common,
                        status=CaseStatus.OK,
                        inference_avg_us=us,
                        inference_p50_us=us,
                        inference_std_us=us * 0.03,
                        inference_min_us=us * 0.95,
                        inference_max_us=us * 1.2,
                    )
                )
    return out


def write(root: Path) -> ResultsStore:
    store = ResultsStore(root)
    for serial in PHONES:
        store.append([row for row in rows() if row.serial == serial])
    return store


def write_manifest(folder: Path) -> Path:
    """A convert manifest naming each model's one file (as `harness convert` would)."""
    models = {
        model: {
            "model_name": model,
            "variants": {
                "fp32": {
                    "variant": "fp32",
                    "quantization": None,
                    "status": "ok",
                    "file": f"{model}.tflite",
                    "sha256": file_sha(model),
                    "size_bytes": 4_000_000,
                    "accepted": None,
                    "reason": "published figures",
                }
            },
        }
        for model in LATENCIES_MS
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"schema_version": 1, "models": models}))
    return path


def fastest(model: str, phone_index: int) -> str:
    """The label of a phone's fastest working configuration of `model`."""
    working = {d: f[phone_index] for d, f in LATENCIES_MS[model].items() if f[phone_index] != FAILED}
    return f"fp32/{min(working, key=working.__getitem__)}/x{THREADS}"
