"""Results folders for the dashboard tests, written by the project's own store code.

The rows are designed, not measured: latencies come from a formula so that the
answers are known. `write_lab_results(root)` writes what a phone lab's sweeps
would store: two runs of the digits_cnn model on four physical phones (tiers
high, mid, mid, low), fp32/fp16/dynamic/int8 x cpu/xnnpack/gpu x 1/2 threads x
3 repetitions (see WINNERS), the GPU delegate failing on one mid phone, one
crashing case, a regression between the runs, fuel-gauge power (one phone was
charging: none), sensor temperatures with throttling on the low phone, and
accuracy rows for every variant. `write_virtual_results(root)` writes a run on
two virtual phones as the virtual farm would: modelled power and temperatures,
the project's runner as the binary. The other writers build the bad inputs the
dashboard must explain rather than crash on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.atomic import write_atomically
from harness.records import (
    RESULTS_SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_METADATA_KEY,
    CaseStatus,
    ClockMethod,
    Delegate,
    DeviceKind,
    ErrorType,
    PowerMethod,
    ResultRow,
    TemperatureMethod,
    case_id_for,
)
from harness.store import ResultsStore

MODEL = "digits_cnn"
VARIANTS = ("fp32", "fp16", "dynamic", "int8")
QUANTIZATION = {"fp32": None, "fp16": "float16", "dynamic": "dynamic_range_int8", "int8": "full_int8"}
SIZE_BYTES = {"fp32": 412_000, "fp16": 214_000, "dynamic": 118_000, "int8": 109_000}
ACCURACY_DROP = {"fp32": 0.0, "fp16": 0.0003, "dynamic": 0.004, "int8": 0.025}
DELEGATES = ("cpu", "xnnpack", "gpu")
THREADS = (1, 2)
REPETITIONS = 3
BENCH_ARGS = ("--num_runs=50", "--warmup_runs=1")
RUNS = {
    "20260301T100000Z-aaaaaa": datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
    "20260308T100000Z-bbbbbb": datetime(2026, 3, 8, 10, 0, tzinfo=UTC),
}
RUN_A, RUN_B = RUNS


@dataclass(frozen=True)
class Phone:
    serial: str
    model: str
    manufacturer: str
    soc: str
    tier: str
    ram_bytes: int
    sdk: int
    base_us: float  # fp32 on cpu, 1 thread
    gpu: bool  # has a working GPU delegate
    power_method: str | None  # None: charging during the run, so no power figure
    kind: str = "physical"


PHONES = (
    Phone("lab-high", "Pixel 8", "Google", "Tensor G3", "high", 12 * 2**30, 34, 2000.0, True, "fuel_gauge"),
    Phone("lab-mid-1", "Galaxy A54", "Samsung", "s5e8835", "mid", 6 * 2**30, 33, 5000.0, True, "fuel_gauge"),
    Phone("lab-mid-2", "Nord CE", "OnePlus", "SM7225", "mid", 6 * 2**30, 31, 5500.0, False, None),
    Phone("lab-low", "Moto E", "Motorola", "MT6765", "low", 2 * 2**30, 29, 12000.0, True, "fuel_gauge"),
)
LAB_BINARY = ("android_aarch64_benchmark_model", "b" * 64)
VIRTUAL_PHONES = (
    Phone(
        "127.0.0.1:40001",
        "Virtual Pixel 8 Pro",
        "Google",
        "Tensor G3",
        "high",
        12 * 2**30,
        34,
        900.0,
        False,
        "model",
        kind="virtual",
    ),
    Phone(
        "127.0.0.1:40002",
        "Virtual Galaxy A03",
        "Samsung",
        "T606",
        "low",
        3 * 2**30,
        33,
        1500.0,
        False,
        "model",
        kind="virtual",
    ),
)
RUNNER_BINARY = ("benchmark_model_x86_64", "c" * 64)
RUN_VIRTUAL = "20260309T100000Z-vvvvvv"
TIERS = ("high", "mid", "low")
WINNERS = {  # fastest configuration by p50 per tier (gpu latency does not depend on threads: a tie)
    "high": ("fp16", "gpu"),
    "mid": ("int8", "xnnpack", 2),
    "low": ("int8", "xnnpack", 2),
}
CRASH = {"run_id": RUN_B, "serial": "lab-low", "variant": "fp32", "delegate": "cpu", "num_threads": 2}
CRASH_MESSAGE = "benchmark_model was killed by signal 11 (SIGSEGV)"
GPU_FAILED_SERIAL = "lab-mid-2"
GPU_FAILED_MESSAGE = "Failed to apply GPU delegate."
REGRESSION: dict[str, Any] = {
    "serial": "lab-mid-1",
    "variant": "fp32",
    "delegate": "cpu",
    "num_threads": 1,
    "factor": 1.3,
}


def sha256_of(variant: str) -> str:
    return hashlib.sha256(f"{MODEL}-{variant}".encode()).hexdigest()


def p50_us(phone: Phone, variant: str, delegate: str, threads: int) -> float:
    """The noise-free p50 latency of a configuration; WINNERS follow from it."""
    variant_factor = {"fp32": 1.0, "fp16": 0.95, "dynamic": 0.8, "int8": 0.55}[variant]
    if delegate == "gpu":
        # GPUs like floats and ignore the CPU thread count; quantized graphs fall back partly to the CPU.
        gpu_float = 0.2 if phone.tier == "high" else 0.6
        return phone.base_us * variant_factor * (gpu_float if variant in ("fp32", "fp16") else 1.3)
    delegate_factor = {"cpu": 1.0, "xnnpack": 0.7}[delegate]
    thread_factor = {1: 1.0, 2: 0.6}[threads]
    return phone.base_us * variant_factor * delegate_factor * thread_factor


def write_lab_results(root: Path) -> ResultsStore:
    """The two-run phone-lab dataset described in the module docstring."""
    store = ResultsStore(root)
    for run_id, started in RUNS.items():
        for index, phone in enumerate(PHONES):
            rows = list(_phone_rows(run_id, started + timedelta(minutes=index), phone))
            store.append(rows)
        _write_manifest(store, run_id, started)
    write_accuracy(root)
    return store


def write_virtual_results(root: Path) -> ResultsStore:
    """One run on two virtual phones, as the virtual farm stores it (see the module docstring)."""
    store = ResultsStore(root)
    started = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
    for index, phone in enumerate(VIRTUAL_PHONES):
        store.append(list(_phone_rows(RUN_VIRTUAL, started + timedelta(minutes=index), phone)))
    _write_manifest(store, RUN_VIRTUAL, started, VIRTUAL_PHONES)
    write_accuracy(root)
    return store


def append_run(store: ResultsStore, run_id: str, started: datetime) -> Path:
    """One more (small) run landing in an existing results folder: one ok row of lab-high."""
    phone = PHONES[0]
    return store.append([_row(run_id, started, phone, "fp32", "cpu", 1, 0, p50=p50_us(phone, "fp32", "cpu", 1))])


# Sustained cases (harness run --sustained 10m --fps 15 --window 60): WINDOWS windows of WINDOW_S seconds each.
RUN_SUSTAINED = "20260312T100000Z-ssssss"
RUN_SUSTAINED_VIRTUAL = "20260312T110000Z-svsvsv"
SUSTAINED_PHONE = PHONES[3]  # lab-low: a physical phone that throttles
SUSTAINED_VIRTUAL = VIRTUAL_PHONES[0]
WINDOWS = 10
WINDOW_S = 60.0
FPS = 15.0  # frame deadline 66.7 ms
THROTTLE_WINDOW = 4  # from this window on, lab-low's big cluster drops and its p50 rises 40%, for good
SPIKE_WINDOW = 2  # one slow window before that: noise, not the throttle
SUSTAINED_BURST_US = 50_000.0
SUSTAINED_THROTTLED_US = 70_000.0
CLUSTERS_KHZ = (1_500_000, 2_000_000)  # lab-low's clusters, little then big, before throttling
THROTTLED_KHZ = (1_500_000, 1_200_000)
VIRTUAL_SUSTAINED_US = 900.0


def sustained_p50_us(serial: str, delegate: str, window: int) -> float:
    """The designed p50 of a sustained window (lab-low int8/xnnpack/x2 throttles; the rest hold steady)."""
    if serial == SUSTAINED_VIRTUAL.serial:
        return VIRTUAL_SUSTAINED_US
    if delegate == "gpu":
        return 20_000.0
    if window >= THROTTLE_WINDOW:
        return SUSTAINED_THROTTLED_US
    return SUSTAINED_BURST_US * (1.1 if window == SPIKE_WINDOW else 1.0)


def write_sustained_results(root: Path) -> ResultsStore:
    """Sustained window rows on a physical phone that throttles (lab-low: int8/xnnpack/x2 from THROTTLE_WINDOW on;
    int8/gpu/x1 steady) with sensor temperatures, sysfs clocks, fuel-gauge power and --fps 15, and on a virtual
    phone (fp32/cpu/x1, no --fps) whose temperatures, clocks and power are modelled and which never slows."""
    store = ResultsStore(root)
    started = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
    physical = [
        row
        for config in (("int8", "xnnpack", 2), ("int8", "gpu", 1))
        for row in _window_rows(RUN_SUSTAINED, started, SUSTAINED_PHONE, *config)
    ]
    store.append(physical)
    _write_manifest(store, RUN_SUSTAINED, started, (SUSTAINED_PHONE,))
    started_virtual = started + timedelta(hours=1)
    store.append(list(_window_rows(RUN_SUSTAINED_VIRTUAL, started_virtual, SUSTAINED_VIRTUAL, "fp32", "cpu", 1)))
    _write_manifest(store, RUN_SUSTAINED_VIRTUAL, started_virtual, (SUSTAINED_VIRTUAL,))
    return store


def _window_rows(run_id: str, started: datetime, phone: Phone, variant: str, delegate: str, threads: int):
    virtual = phone.kind == "virtual"
    for window in range(WINDOWS):
        p50 = sustained_p50_us(phone.serial, delegate, window)
        row = _row(
            run_id, started + timedelta(seconds=window * WINDOW_S), phone, variant, delegate, threads, 0, p50=p50
        )
        throttled = not virtual and delegate != "gpu" and window >= THROTTLE_WINDOW
        clocks = THROTTLED_KHZ if throttled else CLUSTERS_KHZ
        temp_start = (48.0 if virtual else 35.0) + window * (0.2 if virtual else 3.0)
        yield dataclasses.replace(
            row,
            duration_s=WINDOW_S,
            inference_count=int(WINDOW_S * FPS) if not virtual else 20_000,
            window_index=window,
            window_start_s=window * WINDOW_S,
            window_s=WINDOW_S,
            target_fps=None if virtual else FPS,
            cpu_cur_freq_khz=(2_900_000, 2_900_000) if virtual else clocks,
            # A virtual phone's model gives the profile's clocks at the window's end, no mean: the page falls back.
            cpu_avg_freq_khz=None if virtual else tuple(khz * 0.98 for khz in clocks),
            clock_method=ClockMethod.MODEL if virtual else ClockMethod.SYSFS,
            temp_start_c=temp_start,
            temp_end_c=temp_start + (0.2 if virtual else 3.0),
            throttled=None,
        )


def write_only_failures(root: Path) -> ResultsStore:
    """One run in which every case failed: the phone was lost, timed out or crashed."""
    store = ResultsStore(root)
    run_id = "20260310T090000Z-ffffff"
    started = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    phone = PHONES[2]
    outcomes = [
        (CaseStatus.DEVICE_LOST, "device_lost", "device lab-mid-2 went offline"),
        (CaseStatus.TIMEOUT, "timeout", "case exceeded 300 s"),
        (CaseStatus.FAILED, "crash", CRASH_MESSAGE),
    ]
    rows = []
    for number, variant in enumerate(VARIANTS):
        status, error_type, message = outcomes[number % len(outcomes)]
        for repetition in range(REPETITIONS):
            rows.append(
                _row(
                    run_id,
                    started + timedelta(seconds=number * 10 + repetition),
                    phone,
                    variant,
                    "cpu",
                    1,
                    repetition,
                    status=status,
                    error_type=error_type,
                    error_message=message,
                )
            )
    store.append(rows)
    _write_manifest(store, run_id, started)
    return store


def write_newer_schema_file(root: Path) -> Path:
    """A results file from a future harness: the next schema version in its metadata and its column."""
    row = _row(RUN_A, RUNS[RUN_A], PHONES[0], "fp32", "cpu", 1, 0).to_record()
    row["schema_version"] = SCHEMA_VERSION + 1
    schema = RESULTS_SCHEMA.with_metadata({SCHEMA_VERSION_METADATA_KEY: str(SCHEMA_VERSION + 1)})
    table = pa.Table.from_pylist([row], schema=schema)
    path = Path(root) / "dataset" / "run_id=20260401T000000Z-999999" / "device=lab-high" / "part-future.parquet"
    write_atomically(path, lambda out: pq.write_table(table, out))
    return path


def write_damaged_file(root: Path) -> Path:
    """Bytes that are not Parquet under a name the readers look at (a disk error, a bad copy)."""
    path = Path(root) / "dataset" / f"run_id={RUN_B}" / "device=lab-high" / "part-damaged.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1 this is not a parquet file")
    return path


def write_accuracy(root: Path) -> Path:
    """One conversion's accuracy rows, in the schema harness convert writes."""
    from harness.convert_files import ACCURACY_SCHEMA_VERSION, accuracy_schema

    converted = datetime(2026, 2, 28, 9, 0, tzinfo=UTC)
    rows = [
        {
            "schema_version": ACCURACY_SCHEMA_VERSION,
            "conversion_id": "conv-digits",
            "converted_at": converted,
            "model_name": MODEL,
            "source_sha256": "0" * 64,
            "variant": variant,
            "quantization": QUANTIZATION[variant],
            "status": "ok",
            "file": f"{MODEL}_{variant}.tflite",
            "sha256": sha256_of(variant),
            "size_bytes": SIZE_BYTES[variant],
            "eval_samples": 360,
            "labelled": True,
            "reference_accuracy": 0.97,
            "accuracy": 0.97 - ACCURACY_DROP[variant],
            # Converted without a gate (every variant accepted): the tests limit accuracy through the
            # policy's max_accuracy_drop, where the dashboard shows its effect.
            "accuracy_drop": ACCURACY_DROP[variant],
            "accepted": True,
            "max_accuracy_drop": None,
            "untrained": False,
            "harness_version": "0.1.0",
        }
        for variant in VARIANTS
    ]
    table = pa.Table.from_pylist(rows, schema=accuracy_schema())
    path = Path(root) / "accuracy" / "part-conv-digits.parquet"
    write_atomically(path, lambda out: pq.write_table(table, out))
    return path


# -- rows ---------------------------------------------------------------------------


def _phone_rows(run_id: str, started: datetime, phone: Phone):
    noise = random.Random(f"{run_id}/{phone.serial}")
    clock = started
    for variant in VARIANTS:
        for delegate in DELEGATES:
            for threads in THREADS:
                for repetition in range(REPETITIONS):
                    clock += timedelta(seconds=4)
                    case = {
                        "run_id": run_id,
                        "serial": phone.serial,
                        "variant": variant,
                        "delegate": delegate,
                        "num_threads": threads,
                    }
                    if case == CRASH:
                        yield _row(
                            run_id,
                            clock,
                            phone,
                            variant,
                            delegate,
                            threads,
                            repetition,
                            status=CaseStatus.FAILED,
                            error_type="crash",
                            error_message=CRASH_MESSAGE,
                        )
                    elif delegate == "gpu" and not phone.gpu:
                        yield _row(
                            run_id,
                            clock,
                            phone,
                            variant,
                            delegate,
                            threads,
                            repetition,
                            status=CaseStatus.DELEGATE_FAILED,
                            error_type="delegate_failed",
                            error_message=GPU_FAILED_MESSAGE,
                        )
                    else:
                        latency = p50_us(phone, variant, delegate, threads) * (1 + noise.uniform(-0.01, 0.01))
                        regressed = run_id == RUN_B and all(
                            case.get(key) == REGRESSION[key] for key in ("serial", "variant", "delegate", "num_threads")
                        )
                        if regressed:
                            latency *= REGRESSION["factor"]
                        yield _row(run_id, clock, phone, variant, delegate, threads, repetition, p50=latency)


def _row(
    run_id: str,
    started: datetime,
    phone: Phone,
    variant: str,
    delegate: str,
    threads: int,
    repetition: int,
    *,
    p50: float | None = None,
    status: CaseStatus = CaseStatus.OK,
    error_type: str | None = None,
    error_message: str | None = None,
) -> ResultRow:
    case_id = case_id_for(phone.serial, sha256_of(variant), delegate, threads, BENCH_ARGS)
    memory = {"fp32": 60.0, "fp16": 45.0, "dynamic": 35.0, "int8": 30.0}[variant] + (50.0 if delegate == "gpu" else 0)
    power_mw = {"high": 1400.0, "mid": 900.0, "low": 600.0}[phone.tier] * (1.5 if delegate == "gpu" else 1.0)
    virtual = phone.kind == "virtual"
    # Virtual phones' modelled zones run hot (above the 45 degC threshold) and slow nothing: never "throttled".
    temp_start = (48.0 if virtual else 31.0) + repetition * 0.5 + (6.0 if phone.tier == "low" else 0.0)
    throttled = None if virtual else phone.tier == "low" and threads == 2 and run_id == RUN_B
    binary_name, binary_sha = RUNNER_BINARY if virtual else LAB_BINARY
    power_method = None if phone.power_method is None else PowerMethod(phone.power_method)
    powered = p50 is not None and power_method is not None
    return ResultRow(
        run_id=run_id,
        case_id=case_id,
        repetition=repetition,
        started_at=started,
        duration_s=3.2,
        harness_version="0.1.0",
        adb_server="127.0.0.1:5037",
        serial=phone.serial,
        device_kind=DeviceKind(phone.kind),
        device_model=phone.model,
        manufacturer=phone.manufacturer,
        soc=phone.soc,
        soc_identities=(phone.soc,),
        abi="x86_64" if virtual else "arm64-v8a",
        android_sdk=phone.sdk,
        ram_bytes=phone.ram_bytes,
        tier=phone.tier,
        build_fingerprint=f"lab/{phone.serial}:14/user",
        model_name=MODEL,
        variant=variant,
        quantization=QUANTIZATION[variant],
        model_sha256=sha256_of(variant),
        model_size_bytes=SIZE_BYTES[variant],
        delegate=Delegate(delegate),
        num_threads=threads,
        num_runs=50,
        warmup_runs=1,
        inference_count=50 if p50 is not None else None,
        warmup_count=1 if p50 is not None else None,
        bench_binary_name=binary_name,
        bench_binary_sha256=binary_sha,
        init_us=15000.0 if p50 is not None else None,
        first_inference_us=p50 * 3 if p50 is not None else None,
        warmup_avg_us=p50 * 1.5 if p50 is not None else None,
        inference_avg_us=p50 * 1.05 if p50 is not None else None,
        inference_std_us=p50 * 0.03 if p50 is not None else None,
        inference_min_us=p50 * 0.9 if p50 is not None else None,
        inference_max_us=p50 * 1.4 if p50 is not None else None,
        inference_p50_us=p50,
        inference_p95_us=p50 * 1.2 if p50 is not None else None,
        memory_init_mb=memory * 0.6 if p50 is not None else None,
        memory_overall_mb=memory if p50 is not None else None,
        memory_peak_mb=memory if p50 is not None else None,
        delegated_fraction=(1.0 if delegate != "cpu" else 0.0) if p50 is not None else None,
        avg_power_mw=power_mw if powered else None,
        energy_mj_per_inference=power_mw * p50 / 1e6 if powered and p50 is not None else None,
        power_method=power_method if powered else None,
        temp_start_c=temp_start,
        temp_end_c=temp_start + (12.0 if throttled else 2.5),
        temperature_method=TemperatureMethod.MODEL if virtual else TemperatureMethod.SENSOR,
        throttled=throttled,
        status=status,
        error_type=None if error_type is None else ErrorType(error_type),
        error_message=error_message,
        raw_log_path=f"runs/{run_id}/raw/{phone.serial}-{case_id}-r{repetition}.log",
    )


def _write_manifest(store: ResultsStore, run_id: str, started: datetime, phones: tuple[Phone, ...] = PHONES) -> None:
    # The plan names the swept files, as a sweep's run.json does: policies name them the same way.
    models = [
        {
            "name": MODEL,
            "variant": variant,
            "quantization": QUANTIZATION[variant],
            "path": f"/lab/models/{MODEL}_{variant}.tflite",
            "sha256": sha256_of(variant),
            "size_bytes": SIZE_BYTES[variant],
        }
        for variant in VARIANTS
    ]
    store.write_run_manifest(
        run_id,
        {
            "argv": ["harness", "run", "--devices", "all", "--models", "models/"],
            "harness_version": "0.1.0",
            "plan": {"models": models},
            "devices": [{"key": phone.serial, "serial": phone.serial, "tier": phone.tier} for phone in phones],
            "started_at": started,
            "ended_at": started + timedelta(minutes=30),
        },
    )
