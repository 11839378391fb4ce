"""The sweep: every model x delegate x thread count on every selected phone.

Per phone the cases run one at a time, repetitions interleaved: every
configuration once per round, each round in its own seeded random order and
never one configuration twice in a row, so a slow drift (heat, a governor, a
background job) hits all configurations alike. Phones run concurrently, each
in its own thread, so one slow or lost phone never stalls the others. With
`until_decided`, more rounds follow for the configurations whose order
against the phone's best is still undecided (harness.stats), up to
`max_repetitions` each. Every finished case is stored at once as its own
Parquet batch, so a killed harness loses at most the case in flight and
`--resume` runs exactly what is missing, then goes on deciding.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import random
import re
import secrets
import shlex
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import harness
from harness import numerics
from harness.benchlog import parse_log
from harness.benchresult import merge_result, read_benchmark_result
from harness.benchtool import (
    BenchmarkBinaries,
    NoTool,
    PhoneTool,
    choose_tool,
    npu_folder,
    push_npu_libraries,
)
from harness.benchtool import build_binaries as build_binaries  # re-exported: callers build them through sweep
from harness.dialect import DelegateArgs, DialectCache, delegate_args
from harness.digest import file_sha256
from harness.errors import DeviceError, HarnessError, InputFileError, UsageError
from harness.numerics import ModelNumerics, NumericsGate
from harness.phone import lease, power, thermal
from harness.phone.clocks import ClockSnapshot, read_clocks
from harness.phone.device import REMOTE_ROOT, DeviceLost, Phone, ShellResult
from harness.phone.discovery import DeviceEntry
from harness.phone.facts import big_cores
from harness.phone.profiles import soc_identities, soc_name
from harness.records import (
    MEASURED_COLUMNS,
    BenchmarkDialect,
    BenchmarkRun,
    CaseStatus,
    ClockMethod,
    Delegate,
    DeviceKind,
    ErrorType,
    NumericsStatus,
    PowerMethod,
    RepetitionReason,
    ResultRow,
    TemperatureMethod,
    case_id_for,
    config_label,
)
from harness.stats import TieTest, Verdict
from harness.store import ResultsStore

ACCELERATORS = (Delegate.GPU.value, Delegate.NNAPI.value, Delegate.NPU.value)
_KNOWN_VARIANTS = {"fp32": None, "fp16": "float16", "dynamic": "dynamic_range_int8", "int8": "full_int8"}
RECONNECT_BACKOFF_S = (1.0, 2.0, 4.0)
OUTPUT_PATH = f"{REMOTE_ROOT}/numerics/outputs.bin"  # where every case saves its outputs (--output_filepath)
RESULT_PATH = f"{REMOTE_ROOT}/results/result.pb"  # the LiteRT tool's BenchmarkResult (--result_file_path)
LITERT_NOT_CHECKED = (
    "LiteRT 2.x's benchmark_model cannot feed fixed inputs or save outputs (it has no "
    "--input_layer_value_files or --output_filepath): outputs not checked on this phone"
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelArtifact:
    name: str
    variant: str
    quantization: str | None
    path: Path
    sha256: str
    size_bytes: int
    manifest_dir: Path | None = None  # the folder whose convert manifest describes this file


@dataclass(frozen=True)
class SweepParams:
    delegates: tuple[str, ...] = ("cpu", "xnnpack")
    threads: tuple[int, ...] = (1, 2, 4)
    repetitions: int = 3  # interleaved rounds; fewer than 3 make no statistical claim (harness.stats)
    num_runs: int = 50
    warmup_runs: int = 1
    warmup_min_secs: float | None = None  # None: the tool's default (0.5 s)
    min_secs: float = 1.0
    case_timeout_s: float = 300.0
    thermal_threshold_c: float = 45.0
    thermal_max_wait_s: float = 60.0
    pause_s: float = 0.0
    seed: int = 0
    measure_power: bool = True
    check_numerics: bool = True  # feed fixed inputs and compare the outputs with the host's (harness.numerics)
    numerics_samples: int = 0  # more one-iteration runs per configuration, on other inputs
    until_decided: bool = False  # add repetitions where the order against the best is undecided
    max_repetitions: int = 10  # the budget per configuration and device with until_decided
    min_effect: float = TieTest().min_effect  # what until_decided must resolve, as the rankings do
    sustained_s: float | None = None  # --sustained: each case runs as consecutive windows this long in all
    window_s: float = 10.0  # --window: one benchmark process (and one row) per window
    fps: float | None = None  # --fps: inferences per second (the tool's --run_frequency)

    @property
    def windows(self) -> int:
        """Windows per sustained case (0: burst cases)."""
        return math.ceil(self.sustained_s / self.window_s - 1e-9) if self.sustained_s else 0

    def benchmark_args(self, delegate_flags: tuple[str, ...], num_threads: int) -> tuple[str, ...]:
        rate = (f"--run_frequency={self.fps:g}",) if self.fps else ()
        if self.sustained_s:
            # One window: at least and at most window_s seconds of inferences, whatever --num_runs says.
            return (
                f"--num_threads={num_threads}",
                "--num_runs=1",
                f"--warmup_runs={self.warmup_runs}",
                "--warmup_min_secs=0",
                f"--min_secs={self.window_s:g}",
                f"--max_secs={self.window_s:g}",
                *rate,
                *delegate_flags,
            )
        # --warmup_min_secs only when asked: the args make the case id, and runs from before it must resume.
        warmup = () if self.warmup_min_secs is None else (f"--warmup_min_secs={self.warmup_min_secs:g}",)
        return (
            f"--num_threads={num_threads}",
            f"--num_runs={self.num_runs}",
            f"--warmup_runs={self.warmup_runs}",
            *warmup,
            f"--min_secs={self.min_secs:g}",
            *rate,
            *delegate_flags,
        )

    def case_args(self, delegate_flags: tuple[str, ...], num_threads: int) -> tuple[str, ...]:
        """What identifies a case: its benchmark args, and for a sustained case its length (not a tool flag)."""
        length = (f"sustained_s={self.sustained_s:g}",) if self.sustained_s else ()
        return (*self.benchmark_args(delegate_flags, num_threads), *length)


ConfigKey = tuple[str, str, int]
"""A configuration on one phone: (model file sha256, delegate, threads)."""


@dataclass(frozen=True)
class Case:
    model: ModelArtifact
    delegate: str
    num_threads: int
    repetition: int
    reason: RepetitionReason = RepetitionReason.PLANNED

    @property
    def configuration(self) -> ConfigKey:
        return self.model.sha256, self.delegate, self.num_threads


@dataclass(frozen=True)
class SweepSummary:
    run_id: str
    cases_total: int
    cases_ok: int
    cases_failed: int
    statuses: dict[str, int]
    bytes_pushed: int
    wall_s: float
    results_dir: str
    devices: int
    leased: dict[str, str] = field(default_factory=dict)  # serial -> why its cases were skipped (who held it)


@dataclass(frozen=True)
class LeasePolicy:
    """How a sweep takes each phone's lease (harness.phone.lease): wait_s 0 skips a phone leased by another
    sweep (its cases stored as `skipped`, error_type `leased`, for --resume), a number waits at most that
    long, None waits as long as it takes. ttl_s None: $HARNESS_LEASE_TTL_S or 120 s."""

    wait_s: float | None = 0.0
    ttl_s: float | None = None


# --- inputs ------------------------------------------------------------------------


def collect_models(paths: Sequence[Path]) -> list[ModelArtifact]:
    """Every .tflite named or inside a named folder, with name and variant.

    A folder's convert manifest (manifest.json) says what each file is; else
    `mobilenet_v2_int8.tflite` is model `mobilenet_v2`, variant `int8`, and a
    file without a known variant suffix is its own model with variant `default`.
    """
    from harness.convert_files import read_manifest

    files: list[Path] = []
    described: dict[Path, tuple[str, str, str | None]] = {}
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.tflite"))
            if not found:
                raise InputFileError(
                    f"{path} holds no .tflite file", "convert a model into it first ('harness convert')"
                )
            files.extend(found)
            # The convert manifest names each variant file's model, variant and quantization.
            for model in read_manifest(path)["models"].values():
                for variant in model["variants"].values():
                    if variant.get("file"):
                        described[path / variant["file"]] = (
                            model["model_name"],
                            variant["variant"],
                            variant["quantization"],
                        )
        elif path.is_file():
            files.append(path)
        else:
            raise InputFileError(f"no such model file or folder: {path}", "pass .tflite files or folders holding them")
    models = []
    for file in files:
        stem = file.stem
        name, _, suffix = stem.rpartition("_")
        if file in described:
            name, variant, quantization = described[file]
        elif suffix in _KNOWN_VARIANTS and name:
            variant, quantization = suffix, _KNOWN_VARIANTS[suffix]
        else:
            name, variant, quantization = stem, "default", None
        models.append(
            ModelArtifact(
                name,
                variant,
                quantization,
                file,
                file_sha256(file),
                file.stat().st_size,
                file.parent if file in described else None,
            )
        )
    return models


def plan_cases(models: Sequence[ModelArtifact], params: SweepParams, serial: str) -> list[Case]:
    """The device's planned cases: `repetitions` rounds of every configuration, each round in its own
    seeded random order, never one configuration twice in a row (the same plan on a resume)."""
    rng = random.Random(f"{params.seed}:{serial}")
    configurations = [
        Case(model, delegate, threads, 0)
        for model in models
        for delegate in params.delegates
        for threads in params.threads
    ]
    cases: list[Case] = []
    for repetition in range(params.repetitions):
        cases += interleaved(
            [replace(c, repetition=repetition) for c in configurations], rng, cases[-1] if cases else None
        )
    return cases


def interleaved(cases: Sequence[Case], rng: random.Random, previous: Case | None) -> list[Case]:
    """`cases` (one per configuration) in a shuffled order that does not start with `previous`'s configuration."""
    order = list(cases)
    rng.shuffle(order)
    if previous is not None and len(order) > 1 and order[0].configuration == previous.configuration:
        order.append(order.pop(0))
    return order


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


# --- one case ----------------------------------------------------------------------


def affinity_mask(cores_max_khz: dict[int, int], num_threads: int) -> str | None:
    """Hex mask of the fastest cores when the threads fit on them, else None (no pinning)."""
    fastest = big_cores(cores_max_khz)
    if not fastest or num_threads > len(fastest) or len(fastest) == len(cores_max_khz):
        return None
    return format(sum(1 << core for core in fastest), "x")


def case_command(binary: str, model: str, args: tuple[str, ...], mask: str | None) -> str:
    argv = [binary, f"--graph={model}", *args]
    command = " ".join(shlex.quote(part) for part in argv)
    return f"taskset {mask} {command}" if mask else command


def status_of(
    result: ShellResult, run: BenchmarkRun | None, delegate: str, dialect: BenchmarkDialect = BenchmarkDialect.CLASSIC
) -> tuple[CaseStatus, ErrorType | None, str | None]:
    """(status, error_type, error_message) of a finished or failed case."""
    if result.timed_out:
        return CaseStatus.TIMEOUT, ErrorType.TIMEOUT, "the case exceeded its wall-clock limit and was killed"
    if run is None:
        detail = result.stderr.decode("utf-8", errors="replace").strip() or "no benchmark output"
        return CaseStatus.FAILED, ErrorType.TRUNCATED, detail[:500]
    if run.error_type is ErrorType.DELEGATE_FAILED or (delegate in ACCELERATORS and run.delegate_applied is False):
        return (
            CaseStatus.DELEGATE_FAILED,
            ErrorType.DELEGATE_FAILED,
            run.error or f"{delegate} delegate was not applied",
        )
    if (
        dialect is BenchmarkDialect.LITERT
        and delegate in ACCELERATORS
        and not run.ok
        and run.inference_count is None
        and run.error_type is not ErrorType.MODEL_LOAD_FAILED
    ):
        # The LiteRT tool compiles the model for the accelerator before measuring anything: a loaded model
        # that fails there failed on the accelerator (no NPU, no GPU driver, ops it cannot take).
        return CaseStatus.DELEGATE_FAILED, ErrorType.DELEGATE_FAILED, run.error
    if result.exit_code != 0 or not run.ok:
        message = run.error or f"exit code {result.exit_code}"
        return CaseStatus.FAILED, run.error_type or ErrorType.EXIT_CODE, message
    return CaseStatus.OK, None, None


def _killed_by_signal(result: ShellResult) -> str | None:
    if result.exit_code is not None and result.exit_code > 128:
        return f"killed by signal {result.exit_code - 128} (exit code {result.exit_code})"
    return None


# --- one device --------------------------------------------------------------------


@dataclass
class _DeviceProgress:
    """Shared between a device thread and the progress display."""

    done: int = 0
    total: int = 0
    current: str = ""
    bytes_pushed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    note: str = ""
    leased: str = ""  # why the phone's cases were skipped: another sweep held its lease


@dataclass(frozen=True)
class SweepContext:
    run_id: str
    params: SweepParams
    models: tuple[ModelArtifact, ...]
    binaries: BenchmarkBinaries
    store: ResultsStore
    done_keys: frozenset[tuple[str, int]]
    numerics: Mapping[str, ModelNumerics] = field(default_factory=dict)  # by model sha256
    gate: NumericsGate = NumericsGate()
    dialects: DialectCache = field(default_factory=DialectCache)
    # Sustained cases: (case_id, repetition) -> the stored windows' (index, started_at), for --resume.
    done_windows: Mapping[tuple[str, int], Mapping[int, dt.datetime]] = field(default_factory=dict)
    lease: LeasePolicy = LeasePolicy()
    stop: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C: finish the case in flight


@dataclass
class _Window:
    """One window of a sustained case: its index, and when the case's first window started (None: this is it)."""

    index: int
    origin: dt.datetime | None
    started: dt.datetime | None = None


class _DeviceSweep:
    def __init__(self, ctx: SweepContext, entry: DeviceEntry, progress: _DeviceProgress) -> None:
        assert entry.facts is not None
        self.ctx = ctx
        self.entry = entry
        self.info = entry.facts.info
        # A virtual device's temperatures are never sensor readings, and only this project's
        # virtual phones have a documented power model; an emulator's battery is measured by nothing.
        self.temperature_method = (
            TemperatureMethod.MODEL if self.info.device_kind is DeviceKind.VIRTUAL else TemperatureMethod.SENSOR
        )
        self.power_method = (
            PowerMethod.MODEL
            if entry.facts.modelled_sensors
            else None
            if self.info.device_kind is DeviceKind.VIRTUAL
            else PowerMethod.FUEL_GAUGE
        )
        self.phone = Phone(entry.server, entry.serial)
        self.progress = progress
        self.raw_dir = ctx.store.raw_log_dir(ctx.run_id) / _path_part(entry.serial)
        self.cores_khz = {core.index: core.max_freq_khz for core in self.info.cores if core.max_freq_khz}
        self.tool: PhoneTool | None = None  # the benchmark program, once chosen and on the phone
        # Until then, case ids use the dialect farm.toml asks of this phone (the classic one by default).
        self.dialect = ctx.binaries.wanted_dialect(self.info) or BenchmarkDialect.CLASSIC
        self.npu_family = ctx.binaries.npu_family(self.info)
        self.remote_inputs: dict[Path, str] = {}  # numerics value files on this phone
        self.lease: lease.Lease | None = None  # held while the sweep uses the phone

    # The device's columns of every row.
    def _row(self, case: Case, started: dt.datetime, duration_s: float, **values: Any) -> ResultRow:
        params = self.ctx.params
        info = self.info
        return ResultRow(
            run_id=self.ctx.run_id,
            case_id=self.case_id(case),
            repetition=case.repetition,
            repetition_reason=case.reason,
            started_at=started,
            duration_s=duration_s,
            harness_version=harness.__version__,
            adb_server=self.entry.server.address,
            serial=self.entry.serial,
            device_kind=info.device_kind,
            device_model=info.model,
            manufacturer=info.manufacturer,
            soc=soc_name(info),
            soc_identities=soc_identities(info),
            abi=info.abi,
            android_sdk=info.sdk,
            ram_bytes=info.ram_bytes,
            tier=self.entry.tier,
            build_fingerprint=info.fingerprint,
            model_name=case.model.name,
            variant=case.model.variant,
            quantization=case.model.quantization,
            model_sha256=case.model.sha256,
            model_size_bytes=case.model.size_bytes,
            delegate=Delegate(case.delegate),
            num_threads=case.num_threads,
            num_runs=params.num_runs,
            warmup_runs=params.warmup_runs,
            bench_binary_name=self.tool.local.name if self.tool else None,
            bench_binary_sha256=self.tool.sha256 if self.tool else None,
            bench_dialect=self.tool.dialect if self.tool else None,
            **values,
        )

    def delegate(self, delegate: str) -> DelegateArgs:
        """How this phone's benchmark program asks for `delegate` (harness.dialect)."""
        npu_dir = None
        if self.npu_family is not None and delegate == Delegate.NPU.value:
            with contextlib.suppress(DeviceError):  # a missing library fails the push, with its message
                npu_dir = npu_folder(self.npu_family)
        return delegate_args(self.dialect, delegate, npu_dir)

    def case_id(self, case: Case) -> str:
        args = self.ctx.params.case_args(self.delegate(case.delegate).flags, case.num_threads)
        return case_id_for(self.entry.serial, case.model.sha256, case.delegate, case.num_threads, args)

    def _pending(self) -> list[Case]:
        windows = self.ctx.params.windows
        return [
            case
            for case in plan_cases(self.ctx.models, self.ctx.params, self.entry.serial)
            if (
                (self.case_id(case), case.repetition) not in self.ctx.done_keys
                if not windows
                else len(self.ctx.done_windows.get((self.case_id(case), case.repetition), ())) < windows
            )
        ]

    def run(self) -> None:
        cases = self._pending()
        self.progress.total = len(cases) * max(1, self.ctx.params.windows)  # rows: one per case, or per window
        if not cases and not self.ctx.params.until_decided:
            return
        if not self._take_lease(cases):
            return
        try:
            self._run_leased(cases)
        finally:
            assert self.lease is not None
            self.lease.release()  # on errors and Ctrl-C too; a lost phone's lease just runs out

    def _take_lease(self, cases: Sequence[Case]) -> bool:
        """The phone's lease (harness.phone.lease), waited for as the policy says; False when the cases were
        stored instead (skipped as leased by another sweep, or the phone lost)."""
        policy = self.ctx.lease

        def waiting(state: lease.LeaseState) -> None:
            self.progress.note = f"waiting: {state.describe()}"

        try:
            self.lease = lease.acquire(
                self.phone, lease.Owner.here(self.ctx.run_id), policy.ttl_s, policy.wait_s, self.ctx.stop, waiting
            )
        except lease.LeaseBusy as busy:
            self._store_all(cases, CaseStatus.SKIPPED, ErrorType.LEASED, busy.reason)
            self.progress.note = self.progress.leased = busy.reason
            return False
        except DeviceLost as error:
            self._store_all(cases[:1], CaseStatus.DEVICE_LOST, ErrorType.DEVICE_LOST, str(error))
            self.progress.note = "lost while taking its lease"
            return False
        except DeviceError as error:
            # A phone that cannot tell its clock: nothing ran; a gap --resume fills on a phone that can.
            reason = f"could not take the phone's lease: {error}"
            self._store_all(cases, CaseStatus.SKIPPED, ErrorType.LEASED, reason[:500])
            self.progress.note = self.progress.leased = reason
            return False
        self.progress.note = ""
        return True

    def _run_leased(self, cases: list[Case]) -> None:
        params = self.ctx.params
        try:
            self.tool, pushed = choose_tool(self.phone, self.info, self.ctx.binaries, self.ctx.dialects)
            self.progress.bytes_pushed += pushed
        except NoTool as missing:
            self._store_all(cases, missing.status, missing.error_type, missing.message)
            return
        except DeviceLost as error:
            self._store_all(cases[:1], CaseStatus.DEVICE_LOST, ErrorType.DEVICE_LOST, str(error))
            self.progress.note = "lost while choosing its benchmark binary"
            return
        except DeviceError as error:
            self._store_all(cases, CaseStatus.FAILED, ErrorType.PUSH_FAILED, str(error))
            self.progress.note = "push failed"
            return
        if self.tool.dialect is not self.dialect:
            self.dialect = self.tool.dialect  # case ids follow the program that runs them
            cases = self._pending()
            self.progress.total = len(cases) * max(1, params.windows)
        remote_binary = self.tool.remote
        try:
            remote_models = self._push()
        except DeviceLost as error:
            self._store_all(cases[:1], CaseStatus.DEVICE_LOST, ErrorType.DEVICE_LOST, str(error))
            self.progress.note = "lost while pushing"
            return
        except DeviceError as error:
            # A full or read-only phone: every case fails the same way, the other phones go on.
            self._store_all(cases, CaseStatus.FAILED, ErrorType.PUSH_FAILED, str(error))
            self.progress.note = "push failed"
            return
        with contextlib.ExitStack() as charger:
            if self.ctx.params.measure_power and self.power_method is not None:
                try:
                    charger.enter_context(power.unplugged(self.phone))
                except DeviceLost as error:
                    self._store_all(cases[:1], CaseStatus.DEVICE_LOST, ErrorType.DEVICE_LOST, str(error))
                    self.progress.note = "lost at 'dumpsys battery unplug'"
                    return
                except DeviceError as error:
                    # Some builds refuse dumpsys to the shell user: a failure of this phone, stored as data.
                    message = f"{error.message}; sweep this phone with --no-power to benchmark it without power figures"
                    self._store_all(cases, CaseStatus.FAILED, ErrorType.POWER_CONTROL_FAILED, message)
                    self.progress.note = "refused dumpsys battery unplug"
                    return
            try:
                if self._run_cases(cases, remote_binary, remote_models) and params.until_decided:
                    self._until_decided(remote_binary, remote_models)
            finally:
                try:
                    charger.close()
                except DeviceError as error:
                    # Restoring the charger state failed: the cases are stored, the phone is gone or refuses.
                    self.progress.note = f"could not restore the charger state: {error.message}"

    def _run_cases(self, cases: Sequence[Case], remote_binary: str, remote_models: Mapping[str, str]) -> bool:
        """Runs and stores the cases in order; False when the phone is lost (the rest is left for --resume),
        its lease lost (the rest stored as skipped, leased) or the sweep stopped (Ctrl-C)."""
        for index, case in enumerate(cases):
            if self.ctx.stop.is_set():
                self.progress.note = f"stopped; {len(cases) - index} case(s) left for --resume"
                return False
            if self.lease is not None and self.lease.lost.is_set():
                reason = f"the lease was lost mid-sweep: {self.lease.lost_reason}"
                self._store_all(cases[index:], CaseStatus.SKIPPED, ErrorType.LEASED, reason[:500])
                self.progress.note = self.progress.leased = reason
                return False
            if not self._run_case(case, remote_binary, remote_models[case.model.sha256]):
                self.progress.note = f"lost; {len(cases) - index - 1} case(s) left for --resume"
                return False
            if self.ctx.params.pause_s and index + 1 < len(cases):
                time.sleep(self.ctx.params.pause_s)
        return True

    def _until_decided(self, remote_binary: str, remote_models: Mapping[str, str]) -> None:
        """More rounds for the configurations whose order against this phone's best (per model) the
        repetitions cannot tell yet, until every order is decided or each has max_repetitions."""
        params = self.ctx.params
        test = TieTest(min_effect=params.min_effect)
        by_key = {
            (m.sha256, d, t): (m, d, t) for m in self.ctx.models for d in params.delegates for t in params.threads
        }
        samples, failed, last = self._stored_repetitions()
        previous = None
        while True:
            wanted = [
                key
                for key in _undecided(samples, failed, self.ctx.models, test)
                if len(samples.get(key, [])) < params.max_repetitions and key in by_key
            ]
            if not wanted:
                return
            round_ = [Case(*by_key[key], last.get(key, -1) + 1, RepetitionReason.UNTIL_DECIDED) for key in wanted]
            round_ = interleaved(
                round_,
                random.Random(f"{params.seed}:{self.entry.serial}:{len(samples)}:{sum(map(len, samples.values()))}"),
                previous,
            )
            self.progress.total += len(round_)
            if not self._run_cases(round_, remote_binary, remote_models):
                return
            for case in round_:
                last[case.configuration] = case.repetition
            samples, failed, _ = self._stored_repetitions()
            previous = round_[-1]

    def _stored_repetitions(self) -> tuple[dict[ConfigKey, list[float]], set[ConfigKey], dict[ConfigKey, int]]:
        """This run's stored rows of this phone: ok p50s per configuration, the configurations that
        failed, and each configuration's last repetition index (so --resume goes on where it stopped)."""
        rows = self.ctx.store.read([self.ctx.run_id])
        rows = rows[rows["serial"] == self.entry.serial]
        samples: dict[ConfigKey, list[float]] = {}
        failed: set[ConfigKey] = set()
        last: dict[ConfigKey, int] = {}
        stored: Iterable[Any] = rows.itertuples()  # named tuples of the results columns
        for row in stored:
            key = (row.model_sha256, row.delegate, int(row.num_threads))
            last[key] = max(last.get(key, -1), int(row.repetition))
            if row.status == CaseStatus.OK.value and not math.isnan(row.inference_p50_us):
                samples.setdefault(key, []).append(float(row.inference_p50_us))
            elif row.status != CaseStatus.SKIPPED.value:
                failed.add(key)
        return samples, failed, last

    def _push(self) -> dict[str, str]:
        """The models, numerics inputs and NPU libraries on the phone (the binary is there already)."""
        remote_models = {}
        for model in self.ctx.models:
            remote_models[model.sha256], pushed = self.phone.ensure_file(model.path, model.sha256)
            self.progress.bytes_pushed += pushed
        # The fixed numerics inputs, content-addressed like the models (their names are their sha256).
        for path in {p for n in self.ctx.numerics.values() for sample in n.sample_files for p in sample}:
            self.remote_inputs[path], pushed = self.phone.ensure_file(path, path.stem)
            self.progress.bytes_pushed += pushed
        if self.ctx.numerics:
            self.phone.check_output(f"mkdir -p {shlex.quote(OUTPUT_PATH.rsplit('/', 1)[0])}")
        if self.dialect is BenchmarkDialect.LITERT:
            self.phone.check_output(f"mkdir -p {shlex.quote(RESULT_PATH.rsplit('/', 1)[0])}")
            if self.npu_family is not None and Delegate.NPU.value in self.ctx.params.delegates:
                self.progress.bytes_pushed += push_npu_libraries(self.phone, self.npu_family)
        return remote_models

    def _store_all(self, cases: Sequence[Case], status: CaseStatus, error_type: ErrorType, message: str) -> None:
        if not cases:
            return
        now = dt.datetime.now(dt.UTC)
        # In a sustained sweep every row of a case is a window's (the first, for a case that never ran), so burst
        # statistics never see it and the sustained ranking does.
        window = {"window_index": 0, "window_s": self.ctx.params.window_s} if self.ctx.params.windows else {}
        rows = [
            self._row(case, now, 0.0, status=status, error_type=error_type, error_message=message, **window)
            for case in cases
        ]
        self.ctx.store.append(rows)
        self.progress.statuses[status.value] += len(rows)
        self.progress.done += len(rows)

    def _run_case(self, case: Case, remote_binary: str, remote_model: str) -> bool:
        """Runs and stores one case (every missing window of a sustained one); False when the phone is lost."""
        spec = self.delegate(case.delegate)
        if spec.cannot:
            # Nothing to run: this phone's benchmark program cannot ask for the delegate.
            self._store_all([case], CaseStatus.SKIPPED, ErrorType.UNSUPPORTED_BY_BINARY, spec.cannot)
            return True
        self.progress.current = f"{case.model.name} {config_label(case.model.variant, case.delegate, case.num_threads)}"
        if not self.ctx.params.windows:
            return self._run_process(case, remote_binary, remote_model, spec, None)
        stored = self.ctx.done_windows.get((self.case_id(case), case.repetition), {})
        origin = min(stored.values(), default=None)
        for index in range(self.ctx.params.windows):
            if index in stored:
                continue
            if self.ctx.stop.is_set() or (self.lease is not None and self.lease.lost.is_set()):
                return True  # the rest of the windows are left for --resume; _run_cases says why it stopped
            window = _Window(index, origin)
            if not self._run_process(case, remote_binary, remote_model, spec, window):
                return False
            origin = origin or window.started
        return True

    def _run_process(
        self, case: Case, remote_binary: str, remote_model: str, spec: DelegateArgs, window: _Window | None
    ) -> bool:
        """Runs and stores one benchmark process: a burst case, or one window of a sustained case (no cool-down
        but before its first window, outputs checked on its first window only); False when the phone is lost."""
        params = self.ctx.params
        started = dt.datetime.now(dt.UTC)
        clock = time.monotonic()
        sensor_temperatures = self.temperature_method is TemperatureMethod.SENSOR
        if window is not None:
            window.started = started
        try:
            # A sustained case cools down before its first window only: heat building up is what it measures.
            if sensor_temperatures and (window is None or window.origin is None):
                cool = thermal.wait_until_cool(self.phone, params.thermal_threshold_c, params.thermal_max_wait_s)
            else:
                # A modelled temperature never makes the sweep wait: the model never slows the benchmark.
                now_c = thermal.hottest_c(self.phone)
                cool = thermal.CoolWait(start_c=now_c, end_c=now_c, waited_s=0.0, cooled=True)
            clocks_before = read_clocks(self.phone) if window is not None else None
            mask = affinity_mask(self.cores_khz, case.num_threads)
            checking = window is None or window.index == 0
            model_numerics = self.ctx.numerics.get(case.model.sha256) if checking else None
            command = self._command(
                case,
                remote_binary,
                remote_model,
                params.benchmark_args(spec.flags, case.num_threads),
                mask,
                0,
                checking,
            )
            sampler = (
                power.PowerSampler(self.phone, self.power_method)
                if params.measure_power and self.power_method is not None
                else None
            )
            if sampler:
                sampler.start()
            try:
                timeout_s = params.case_timeout_s + (2 * params.window_s if window is not None else 0.0)
                result = self.phone.shell(command + " 2>&1", timeout_s=timeout_s)
            finally:
                reading = sampler.stop() if sampler else None
            if result.exit_code is None and not result.timed_out and not self._reachable():
                raise DeviceLost(
                    f"{self.entry.serial} on adb server {self.entry.server.address}: the transport broke during "
                    "the case and the phone did not come back",
                    "reconnect it ('harness devices' shows its state), then 'harness run --resume latest'",
                )
            clocks_after = read_clocks(self.phone) if window is not None and not result.timed_out else None
        except DeviceLost as error:
            self.ctx.store.append(
                [
                    self._row(
                        case,
                        started,
                        time.monotonic() - clock,
                        status=CaseStatus.DEVICE_LOST,
                        **(self._window_columns(window, None, None) if window is not None else {}),
                        error_type=ErrorType.DEVICE_LOST,
                        error_message=str(error)[:500],
                    )
                ]
            )
            self.progress.statuses[CaseStatus.DEVICE_LOST.value] += 1
            self.progress.done += 1
            return False

        temp_end = None
        # A timed-out phone may still be frozen: what follows is best effort.
        with contextlib.suppress(DeviceLost):
            if result.timed_out:
                self._kill_leftover(remote_binary)
            temp_end = thermal.hottest_c(self.phone)
        suffix = "" if window is None else f"-w{window.index}"
        log_path = self.raw_dir / f"{self.case_id(case)}-r{case.repetition}{suffix}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        output = result.stdout + result.stderr
        log_path.write_bytes(f"$ {command}\n".encode() + output)
        runs = parse_log(output)
        run = runs[-1] if runs else None
        if run is not None and self.dialect is BenchmarkDialect.LITERT and not result.timed_out:
            run = self._with_result_file(run)
        status, error_type, message = status_of(result, run, case.delegate, self.dialect)
        if status is CaseStatus.FAILED and (signal := _killed_by_signal(result)):
            error_type, message = ErrorType.CRASH, f"{signal}; {message}"
        measured = run if run is not None and status is not CaseStatus.TIMEOUT else BenchmarkRun()
        avg_power_mw = reading.avg_power_mw if reading and status is CaseStatus.OK else None
        if checking:
            checked = self._numerics(
                case,
                model_numerics,
                status,
                output.decode("utf-8", errors="replace"),
                remote_binary,
                remote_model,
                mask,
            )
        else:
            checked = {
                "numerics_status": NumericsStatus.NOT_CHECKED,
                "numerics_reason": "a sustained case checks its outputs on its first window",
            }
        any_temperature = cool.start_c is not None or temp_end is not None
        row = self._row(
            case,
            started,
            time.monotonic() - clock,
            **{name: getattr(measured, name) for name in MEASURED_COLUMNS},
            bench_binary_version=run.binary_version if run else None,
            performance_mode=spec.performance_mode,
            delegated_fraction=_delegated_fraction(measured, case.delegate),
            avg_power_mw=avg_power_mw,
            energy_mj_per_inference=power.energy_mj_per_inference(avg_power_mw, measured.inference_avg_us),
            power_method=reading.power_method if reading and avg_power_mw is not None else None,
            temp_start_c=cool.start_c,
            temp_end_c=temp_end,
            temperature_method=self.temperature_method if any_temperature else None,
            # Throttling is judged on measured temperatures only: a modelled one slows nothing.
            throttled=_throttled(cool, temp_end, params.thermal_threshold_c) if sensor_temperatures else None,
            **checked,
            **(self._window_columns(window, clocks_before, clocks_after) if window is not None else {}),
            target_fps=params.fps,
            status=status,
            error_type=error_type,
            error_message=message,
            raw_log_path=str(log_path.relative_to(self.ctx.store.root)),
        )
        self.ctx.store.append([row])
        self.progress.statuses[status.value] += 1
        self.progress.done += 1
        return True

    def _window_columns(
        self, window: _Window, before: ClockSnapshot | None, after: ClockSnapshot | None
    ) -> dict[str, object]:
        """A sustained window's own columns: where it sits in the case, and the CPU clocks over it."""
        origin = window.origin or window.started
        assert window.started is not None and origin is not None
        return {
            "window_index": window.index,
            "window_start_s": round((window.started - origin).total_seconds(), 3),
            "window_s": self.ctx.params.window_s,
            "cpu_cur_freq_khz": after.cluster_cur_khz() if after else None,
            "cpu_avg_freq_khz": after.mean_khz_since(before) if after and before else None,
            "clock_method": (ClockMethod.MODEL if self.info.device_kind is DeviceKind.VIRTUAL else ClockMethod.SYSFS)
            if after and after.cur_khz
            else None,
        }

    def _command(
        self,
        case: Case,
        remote_binary: str,
        remote_model: str,
        args: tuple[str, ...],
        mask: str | None,
        sample: int,
        check_outputs: bool = True,
    ) -> str:
        """The shell command of one benchmark process: on the model's fixed inputs (sample `sample`), saving
        its outputs, when numerics are checked; an old output file is removed first, so none is mistaken.
        The LiteRT tool writes its BenchmarkResult file instead, and finds an NPU's libraries by their folder."""
        if self.dialect is BenchmarkDialect.LITERT:
            command = case_command(remote_binary, remote_model, (*args, f"--result_file_path={RESULT_PATH}"), mask)
            if case.delegate == Delegate.NPU.value and self.npu_family is not None:
                # The vendor runtimes the dispatch library loads (QNN's HTP skeletons, ...) are searched there too.
                folder = shlex.quote(npu_folder(self.npu_family))
                command = f"LD_LIBRARY_PATH={folder} ADSP_LIBRARY_PATH={folder} {command}"
            return f"rm -f {shlex.quote(RESULT_PATH)}; {command}"
        model_numerics = self.ctx.numerics.get(case.model.sha256) if check_outputs else None
        if model_numerics is None or model_numerics.unavailable:
            return case_command(remote_binary, remote_model, args, mask)
        files = [self.remote_inputs[path] for path in model_numerics.sample_files[sample]]
        flags = model_numerics.flags(sample, files, OUTPUT_PATH)
        return f"rm -f {shlex.quote(OUTPUT_PATH)}; {case_command(remote_binary, remote_model, args + flags, mask)}"

    def _numerics(
        self,
        case: Case,
        model_numerics: ModelNumerics | None,
        status: CaseStatus,
        output: str,
        remote_binary: str,
        remote_model: str,
        mask: str | None,
    ) -> dict[str, object]:
        """The numerics columns of a finished case (harness.numerics): figures and status, or why not checked."""

        def not_checked(reason: str) -> dict[str, object]:
            return {"numerics_status": NumericsStatus.NOT_CHECKED, "numerics_reason": reason}

        if model_numerics is None:
            return not_checked("numerics not asked for (harness run --no-numerics)")
        if self.dialect is BenchmarkDialect.LITERT:
            return not_checked(LITERT_NOT_CHECKED)
        if model_numerics.unavailable:
            return not_checked(model_numerics.unavailable)
        if status is not CaseStatus.OK:
            return not_checked("the case did not finish ok")
        ignored = numerics.unconsumed_flags(output)
        if ignored:
            return not_checked(
                f"the benchmark binary does not know {ignored} (an older benchmark_model): its "
                "outputs cannot be checked"
            )
        try:
            pulled = [self.phone.pull(OUTPUT_PATH, timeout_s=30.0)]
            extra = (
                self.ctx.params.numerics_samples
                if case.repetition == 0 and case.reason is RepetitionReason.PLANNED
                else 0
            )
            for sample in range(1, min(extra, len(model_numerics.sample_files) - 1) + 1):
                once = (
                    "--num_runs=1",
                    "--warmup_runs=0",
                    "--min_secs=0",
                    "--warmup_min_secs=0",
                    f"--num_threads={case.num_threads}",
                    *self.delegate(case.delegate).flags,
                )
                run = self.phone.shell(
                    self._command(case, remote_binary, remote_model, once, mask, sample) + " 2>&1",
                    timeout_s=self.ctx.params.case_timeout_s,
                )
                if run.timed_out:
                    self._kill_leftover(remote_binary)
                    return not_checked(f"the one-iteration run on numerics sample {sample} timed out")
                if run.exit_code != 0:
                    return not_checked(
                        f"the one-iteration run on numerics sample {sample} failed (exit code {run.exit_code})"
                    )
                pulled.append(self.phone.pull(OUTPUT_PATH, timeout_s=30.0))
        except DeviceLost:
            return not_checked("the phone stopped answering while its outputs were pulled")
        except DeviceError:
            return not_checked("the benchmark binary wrote no --output_filepath file (an older benchmark_model?)")
        errors, verdict, reason = numerics.judge(model_numerics, pulled, self.ctx.gate)
        values: dict[str, object] = {
            "numerics_reference": model_numerics.reference,
            "numerics_status": verdict,
            "numerics_reason": reason,
        }
        if errors is not None:
            values |= {
                "output_max_abs_error": numerics.finite(errors.max_abs_error),
                "output_rmse": numerics.finite(errors.rmse),
                "output_cosine": errors.cosine,
                "output_top1_agreement": errors.top1_agreement,
                "output_sym_kl": numerics.finite(errors.sym_kl),
                "output_reference_max_abs": errors.reference_max_abs,
            }
        return values

    def _with_result_file(self, run: BenchmarkRun) -> BenchmarkRun:
        """The LiteRT tool's numbers from its BenchmarkResult file (median and p95 are only there), over the
        printed block's; the printed ones alone when the file is missing or unreadable."""
        try:
            data = self.phone.pull(RESULT_PATH, timeout_s=30.0)
        except DeviceError:  # DeviceLost included: the next case finds out whether the phone is gone
            return run
        return merge_result(run, read_benchmark_result(data))

    def _reachable(self) -> bool:
        for pause_s in RECONNECT_BACKOFF_S:
            with contextlib.suppress(DeviceLost):
                if self.phone.shell("echo ok", timeout_s=5.0).exit_code == 0:
                    return True
            time.sleep(pause_s)
        return False

    def _kill_leftover(self, remote_binary: str) -> None:
        """Closing the stream kills the process on adbd; make sure on phones that keep it."""
        name = remote_binary.rsplit("/", 1)[-1]
        listing = self.phone.shell("ps -A", timeout_s=10.0).text
        pids = [line.split()[1] for line in listing.splitlines()[1:] if line.split()[-1:] == [name]]
        if pids:
            self.phone.shell("kill -9 " + " ".join(shlex.quote(pid) for pid in pids), timeout_s=10.0)


def _undecided(
    samples: Mapping[ConfigKey, Sequence[float]],
    failed: set[ConfigKey],
    models: Sequence[ModelArtifact],
    test: TieTest,
) -> list[ConfigKey]:
    """The configurations (sha256, delegate, threads) that need another repetition: per model, each one whose
    order against the best median (ok and never failed) is undecided or untested, and that best itself."""
    wanted: list[ConfigKey] = []
    names = {m.sha256: m.name for m in models}
    for name in dict.fromkeys(names.values()):
        measured = {
            key: values for key, values in samples.items() if names.get(key[0]) == name and key not in failed and values
        }
        if len(measured) < 2:
            continue
        best = min(measured, key=lambda key: (statistics.median(measured[key]), key))
        for key, values in sorted(measured.items()):
            if key == best:
                continue
            if test.compare(values, measured[best]).verdict in (Verdict.UNDECIDED, Verdict.UNTESTED):
                wanted += [k for k in (key, best) if k not in wanted]
    return wanted


def _delegated_fraction(run: BenchmarkRun, delegate: str) -> float | None:
    if run.delegated_nodes is not None and run.total_nodes:
        return run.delegated_nodes / run.total_nodes
    if run.delegate_applied is False:
        return 0.0
    return None


def _throttled(cool: thermal.CoolWait, temp_end_c: float | None, threshold_c: float) -> bool | None:
    if temp_end_c is None and cool.end_c is None:
        return None
    # The case started above the threshold (cooling gave up) or ended above it.
    return (not cool.cooled) or (temp_end_c is not None and temp_end_c >= threshold_c)


def _path_part(serial: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", serial)


# --- the whole sweep ---------------------------------------------------------------


def run_sweep(
    devices: Sequence[DeviceEntry],
    models: Sequence[ModelArtifact],
    params: SweepParams,
    binaries: BenchmarkBinaries,
    store: ResultsStore,
    argv: Sequence[str] = (),
    resume_run_id: str | None = None,
    run_id: str | None = None,
    show_progress: bool | None = None,
    lease_policy: LeasePolicy = LeasePolicy(),
) -> SweepSummary:
    if not devices:
        raise UsageError("no device selected", "check 'harness devices' and the --devices selector")
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    run_id = resume_run_id or run_id or new_run_id(started)
    done = frozenset(store.stored_case_keys(run_id)) if resume_run_id else frozenset()
    manifest = {
        "argv": list(argv),
        "harness_version": harness.__version__,
        "python": sys.version.split()[0],
        "plan": plan_manifest(models, params),
        "devices": [
            {
                "key": e.key,
                "server": e.server.address,
                "serial": e.serial,
                "model": e.facts.info.model if e.facts else None,
                "tier": e.tier,
            }
            for e in devices
        ],
        "binaries": binaries.manifest(),
        "started_at": started,
        "ended_at": None,
    }
    if resume_run_id:
        previous = store.read_run_manifest(run_id)
        manifest["started_at"] = previous.get("started_at", started)
        manifest["resumed_at"] = [*previous.get("resumed_at", []), started.isoformat()]
    checks, gate = prepare_numerics(models, params, store.numerics_dir(run_id)), NumericsGate()
    manifest["numerics"] = numerics_manifest(models, checks, gate) if params.check_numerics else None
    store.write_run_manifest(run_id, manifest)

    ctx = SweepContext(
        run_id,
        params,
        tuple(models),
        binaries,
        store,
        done,
        checks,
        gate,
        done_windows=store.stored_windows(run_id) if resume_run_id else {},
        lease=lease_policy,
    )
    progress = {entry.key: _DeviceProgress() for entry in devices}
    with (
        _progress_display(devices, progress, show_progress),
        ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="sweep") as pool,
    ):
        futures = [pool.submit(_DeviceSweep(ctx, entry, progress[entry.key]).run) for entry in devices]
        try:
            for future in futures:
                future.result()
        except BaseException:
            # Ctrl-C (or a bug in one phone's thread): the others store the case in flight, stop,
            # and release their leases before the pool lets go.
            ctx.stop.set()
            raise

    try:
        # One file per device and model instead of one per case: what a year of nightly runs needs.
        store.compact(run_id)
    except (HarnessError, OSError) as error:
        # The per-case files read just as well; 'harness results compact' merges them later.
        log.warning("run %s was not compacted (%s); run 'harness results compact %s'", run_id, error, run_id)
    manifest["ended_at"] = dt.datetime.now(dt.UTC)
    store.write_run_manifest(run_id, manifest)
    statuses: Counter[str] = Counter()
    for item in progress.values():
        statuses.update(item.statuses)
    total = sum(statuses.values())
    return SweepSummary(
        run_id=run_id,
        cases_total=total,
        cases_ok=statuses[CaseStatus.OK.value],
        cases_failed=total - statuses[CaseStatus.OK.value],
        statuses=dict(statuses),
        bytes_pushed=sum(item.bytes_pushed for item in progress.values()),
        wall_s=round(time.monotonic() - clock, 3),
        results_dir=str(store.root),
        devices=len(devices),
        leased={entry.serial: progress[entry.key].leased for entry in devices if progress[entry.key].leased},
    )


def prepare_numerics(models: Sequence[ModelArtifact], params: SweepParams, folder: Path) -> dict[str, ModelNumerics]:
    """Each model file's fixed inputs (written under `folder`, beside the run) and reference outputs."""
    if not params.check_numerics:
        return {}
    return {
        m.sha256: numerics.prepare(m.path, m.name, m.manifest_dir, 1 + params.numerics_samples, params.seed, folder)
        for m in models
    }


def numerics_manifest(
    models: Sequence[ModelArtifact], checks: Mapping[str, ModelNumerics], gate: NumericsGate
) -> dict[str, object]:
    """What run.json says of the numerics check: the gate the rows' statuses used, and per model file
    its inputs (where from; per sample, one file per input under runs/<id>/numerics/), its reference,
    or why it cannot be checked."""
    described = {}
    for model in models:
        check = checks[model.sha256]
        described[model.path.name] = {
            "sha256": model.sha256,
            "reference": None if check.unavailable else check.reference.value,
            "inputs": check.input_source,
            "sample_files": [[path.name for path in sample] for sample in check.sample_files],
            "unavailable": check.unavailable,
        }
    return {"gate": gate.describe(), "models": described}


def plan_manifest(models: Sequence[ModelArtifact], params: SweepParams) -> dict[str, object]:
    return {
        "params": {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(params).items()},
        "models": [
            # Absolute, so policy derive and the dashboard find the files' manifest from any folder.
            {
                "name": m.name,
                "variant": m.variant,
                "quantization": m.quantization,
                "path": str(m.path.resolve()),
                "sha256": m.sha256,
                "size_bytes": m.size_bytes,
            }
            for m in models
        ],
    }


def params_from_manifest(manifest: Mapping[str, Any]) -> tuple[SweepParams, list[ModelArtifact]]:
    """The plan a run was started with, so `--resume` runs exactly the same cases."""
    from harness.convert_files import read_manifest

    raw = dict(manifest["plan"]["params"])
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    params = replace(SweepParams(), **fields)
    models = []
    for entry in manifest["plan"]["models"]:
        path = Path(entry["path"])
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            raise InputFileError(
                f"model {path} of the run to resume is missing or changed",
                "restore the exact file, or start a new run instead of resuming",
            )
        described = path.parent if entry["name"] in read_manifest(path.parent)["models"] else None
        models.append(
            ModelArtifact(
                entry["name"],
                entry["variant"],
                entry["quantization"],
                path,
                entry["sha256"],
                entry["size_bytes"],
                described,
            )
        )
    return params, models


@contextlib.contextmanager
def _progress_display(
    devices: Sequence[DeviceEntry], progress: dict[str, _DeviceProgress], show: bool | None
) -> Iterator[None]:
    """One bar per device on a terminal (stderr); nothing otherwise."""
    if not (sys.stderr.isatty() if show is None else show):
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    display = Progress(
        TextColumn("{task.fields[device]:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[case]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    tasks = {
        entry.key: display.add_task(
            "", total=None, device=f"{entry.facts.info.model if entry.facts else entry.serial}", case=""
        )
        for entry in devices
    }
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(0.2):
            for key, item in progress.items():
                display.update(
                    tasks[key], completed=item.done, total=item.total or None, case=item.note or item.current
                )

    with display:
        thread = threading.Thread(target=refresh, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            for key, item in progress.items():
                display.update(tasks[key], completed=item.done, total=item.total or 1, case=item.note or "done")


def summary_json(summary: SweepSummary) -> str:
    return json.dumps(asdict(summary), indent=2)
