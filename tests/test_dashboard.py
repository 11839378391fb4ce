"""The dashboard on real Parquet results written by the store: data layer, every page through
Streamlit's AppTest, bad input, and the `harness dashboard` command's wiring."""

from __future__ import annotations

import base64
import json
import re
import socket
from datetime import timedelta
from pathlib import Path

import dashboard_data as lab
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from dashboard import session
from dashboard.data import RESULTS_ENV, Dataset, Selection, state_key
from harness.commands import main as cli
from harness.commands.dashboard import streamlit_command
from harness.errors import SchemaError
from harness.store import ResultsStore

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
OVERVIEW = "views/overview.py"
RANKINGS = "views/rankings.py"
PARETO = "views/pareto.py"
DEVICE = "views/device.py"
SUSTAINED = "views/sustained.py"
COMPARE = "views/compare_runs.py"
POLICY = "views/policy.py"
PAGES = (OVERVIEW, RANKINGS, PARETO, DEVICE, SUSTAINED, COMPARE, POLICY)
TIMEOUT_S = 60  # the first run imports plotly, duckdb and pandas


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lab_results")
    lab.write_lab_results(root)
    return root


def open_app(root: Path, monkeypatch: pytest.MonkeyPatch, page: str = OVERVIEW) -> AppTest:
    monkeypatch.setenv(RESULTS_ENV, str(root))
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    if page != OVERVIEW:
        app.switch_page(page).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def figures(app: AppTest) -> dict[str | None, go.Figure]:
    """The page's plotly figures by chart key, decoded from the spec the app sends to the browser."""
    return {chart.key: go.Figure(_plain(json.loads(chart.proto.spec))) for chart in app.get("plotly_chart")}


def _plain(value: object) -> object:
    # Plotly 6 sends numeric arrays as {"dtype", "bdata" (base64), "shape"}; tests want the numbers.
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            if "shape" in value:
                array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
            return array.tolist()
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


TABLE_COLUMNS = {  # a column only that table has (on its page)
    "failures": "repetitions",
    "devices": "ram_bytes",
    "runs": "ended_at",
    "device_failures": "error_type",
    "throttled": "throttled repetitions",
    "best_per_tier": "tied with best",
    "ranking": "reason",
    "front": "accuracy_drop",
    "changes": "verdict",
    "policy_tiers": "fallbacks",
    "coverage": "runs_config",
    "sustained": "sustained / burst",
}


def table(app: AppTest, name: str) -> pd.DataFrame:
    """A page's table by what it shows (st.dataframe carries no key without selections)."""
    column = TABLE_COLUMNS[name]
    matches = [frame.value for frame in app.dataframe if column in frame.value.columns]
    assert len(matches) == 1, f"{len(matches)} tables with column {column!r}"
    return matches[0]


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


# -- data layer ------------------------------------------------------------------------


def test_dataset_reads_the_store_rows_runs_and_accuracy(lab_root: Path) -> None:
    dataset = Dataset.open(lab_root)
    assert dataset.skipped == ()  # every file current and readable: read in place
    assert dataset.row_count == 2 * 4 * 4 * 3 * 2 * 3
    assert dataset.models() == [lab.MODEL]
    assert [run.run_id for run in dataset.runs] == [lab.RUN_A, lab.RUN_B]
    first = dataset.runs[0]
    assert first.started_at == lab.RUNS[lab.RUN_A]  # from the manifest
    assert first.ended_at == lab.RUNS[lab.RUN_A] + timedelta(minutes=30)
    assert first.devices == 4
    figures = dataset.run_figures()[lab.RUN_A]
    assert (figures.cases, figures.ok, figures.failed) == (96, 264, 24)
    assert first.argv[:2] == ("harness", "run")
    assert dict(zip(dataset.accuracy["variant"], dataset.accuracy["accuracy_drop"], strict=False)) == lab.ACCURACY_DROP
    # The same rows as the store's own reader, column for column.
    stored = ResultsStore(lab_root).read()
    mine = dataset.sql("SELECT * FROM rows ORDER BY started_at, serial, case_id, repetition")
    assert list(mine.columns) == list(stored.columns)
    assert mine["inference_p50_us"].sum() == pytest.approx(stored["inference_p50_us"].sum())
    assert (mine["case_id"].to_numpy() == stored["case_id"].to_numpy()).all()
    dataset.close()


def test_state_key_changes_when_a_run_lands(tmp_path: Path) -> None:
    assert state_key(tmp_path) == (0, 0, 0)
    store = lab.write_lab_results(tmp_path)
    before = state_key(tmp_path)
    assert before[0] == 2 + 8 + 1 + 2  # 2 run folders, their 4 device folders each, the accuracy file, 2 manifests
    lab.append_run(store, "run-late", lab.RUNS[lab.RUN_B])
    assert state_key(tmp_path)[0] > before[0]


def test_a_damaged_file_is_skipped_and_reported(tmp_path: Path) -> None:
    lab.write_lab_results(tmp_path)
    damaged = lab.write_damaged_file(tmp_path)
    dataset = Dataset.open(tmp_path)
    assert [skipped.path for skipped in dataset.skipped] == [damaged]  # its name does not say: checked first
    assert dataset.row_count == 576


def test_a_newer_schema_is_refused_with_the_stores_words(tmp_path: Path) -> None:
    lab.write_lab_results(tmp_path)
    lab.write_newer_schema_file(tmp_path)
    with pytest.raises(SchemaError, match=r"is results file v4, but this tflite-farm reads up to v3"):
        Dataset.open(tmp_path)


def test_selection_filters_model_and_runs(lab_root: Path) -> None:
    dataset = Dataset.open(lab_root)
    where, params = Selection(lab.MODEL, (lab.RUN_B,)).where()
    counts = dataset.sql(f"SELECT run_id, count(*) AS n FROM rows WHERE {where} GROUP BY run_id", params)
    assert counts.to_dict("records") == [{"run_id": lab.RUN_B, "n": 288}]
    where, params = Selection("other_model", (lab.RUN_A, lab.RUN_B)).where()
    assert dataset.sql(f"SELECT count(*) AS n FROM rows WHERE {where}", params)["n"].iloc[0] == 0


def test_results_root_comes_from_the_command_line_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.setattr("sys.argv", ["pytest", "--results", "/not/for/us"])
    assert session.results_root() == Path("results")  # someone else's argv is not ours
    monkeypatch.setenv(RESULTS_ENV, "/from/env")
    assert session.results_root() == Path("/from/env")
    monkeypatch.setattr("sys.argv", [str(APP), "--results", "/from/argv"])
    assert session.results_root() == Path("/from/argv")


# -- Overview ------------------------------------------------------------------------------


@pytest.mark.slow  # a Streamlit AppTest run
def test_overview_counts_tiers_statuses_and_failures(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch)
    assert app.title[0].value == "Overview"
    assert metrics(app) == {"Runs": "2", "Devices": "4", "Tiers": "3", "Rows ok": "525", "Rows failed": "51"}

    charts = figures(app)
    status = charts["status_by_tier"]
    by_status = {trace.name: dict(zip(trace.x, trace.y, strict=False)) for trace in status.data}
    assert list(status.layout.xaxis.categoryarray) == ["high", "mid", "low"]  # tiers.toml order
    assert by_status["ok"] == {"high": 144, "mid": 240, "low": 141}
    assert by_status["delegate_failed"] == {"mid": 48}
    assert by_status["failed"] == {"low": 3}
    devices = charts["devices_per_tier"].data[0]
    assert dict(zip(devices.x, devices.y, strict=False)) == {"high": 1, "mid": 2, "low": 1}

    failures = table(app, "failures")
    crash = failures.iloc[0]  # a crash sorts before the delegates that are simply absent
    assert (crash["run_id"], crash["serial"], crash["variant"], crash["delegate"], crash["num_threads"]) == (
        lab.RUN_B,
        "lab-low",
        "fp32",
        "cpu",
        2,
    )
    assert (crash["status"], crash["error_type"], crash["error_message"], crash["repetitions"]) == (
        "failed",
        "crash",
        lab.CRASH_MESSAGE,
        3,
    )
    assert crash["raw_log_path"].startswith(f"runs/{lab.RUN_B}/raw/lab-low-")
    gpu = failures[failures["status"] == "delegate_failed"]
    assert len(gpu) == 2 * 4 * 2  # runs x variants x threads, repetitions folded
    assert set(gpu["serial"]) == {lab.GPU_FAILED_SERIAL} and set(gpu["delegate"]) == {"gpu"}
    assert set(gpu["error_message"]) == {lab.GPU_FAILED_MESSAGE}

    device_table, runs_table = table(app, "devices"), table(app, "runs")
    assert dict(zip(device_table["serial"], device_table["tier"], strict=False)) == {
        p.serial: p.tier for p in lab.PHONES
    }
    assert list(runs_table["run_id"]) == [lab.RUN_A, lab.RUN_B]
    assert list(runs_table["failed"]) == [24, 27]
    assert not app.warning  # nothing skipped


@pytest.mark.slow  # a Streamlit AppTest run
def test_sidebar_narrows_to_chosen_runs(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch)
    assert app.sidebar.selectbox(key="model").value == lab.MODEL
    app.sidebar.toggle(key="all_runs").set_value(False).run()
    assert app.sidebar.multiselect(key="runs").value == [lab.RUN_B]  # the latest run by default
    assert metrics(app)["Runs"] == "1"
    assert metrics(app)["Rows ok"] == "261"
    assert metrics(app)["Rows failed"] == "27"
    app.sidebar.multiselect(key="runs").set_value([]).run()
    assert "Pick at least one run" in texts(app.info)
    assert not app.exception


@pytest.mark.slow  # a Streamlit AppTest run
def test_a_new_run_appears_on_the_next_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = lab.write_lab_results(tmp_path)
    app = open_app(tmp_path, monkeypatch)
    assert metrics(app)["Runs"] == "2"
    late = "20260315T100000Z-cccccc"
    lab.append_run(store, late, lab.RUNS[lab.RUN_B] + timedelta(days=7))
    app.run()  # no restart: the cache is keyed on the folder's state
    assert metrics(app)["Runs"] == "3"
    assert late in list(table(app, "runs")["run_id"])


# -- Device ---------------------------------------------------------------------------------


@pytest.mark.slow  # a Streamlit AppTest run
def test_device_page_shows_latency_temperatures_and_measured_power(
    lab_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(lab_root, monkeypatch, DEVICE)
    assert app.selectbox(key="device").value == "lab-high"
    assert metrics(app) == {
        "Tier": "high",
        "Android SDK": "34",
        "RAM": "12.0 GiB",
        "Rows ok": "144 of 144",
        "Run-to-run variation (CV)": "0.5%",
        "Max / min of repetitions": "x1.01",
        "p95 / p50 within a run": "x1.20",
    }  # the noise floor: +-1% noise, p95 = 1.2 x p50
    charts = figures(app)

    latency = charts["latency"]
    points: dict[str, list[float]] = {}  # configuration -> its repetitions' p50 in ms
    for trace in latency.data:
        for configuration, value in zip(trace.x, trace.y, strict=False):
            points.setdefault(configuration, []).append(value)
    assert len(points) == 4 * 3 * 2
    assert all(len(values) == 2 * lab.REPETITIONS for values in points.values())  # both runs
    fastest = min(points, key=lambda c: sum(points[c]) / len(points[c]))
    assert fastest.startswith("fp16/gpu")  # WINNERS["high"]
    assert list(latency.layout.xaxis.categoryarray)[:3] == ["fp32/cpu/x1", "fp32/cpu/x2", "fp32/gpu/x1"]
    assert "p50 latency" in latency.layout.yaxis.title.text

    temperatures = charts["temperatures"]
    assert {trace.name for trace in temperatures.data} == {"before the case", "after the case"}
    assert "No case ran throttled." in texts(app.caption)

    assert "`fuel_gauge` (measured (fuel gauge))" in texts(app.caption)
    assert "modelled" not in texts(app.warning)
    assert {trace.name for trace in charts["energy"].data} == {"measured (fuel gauge)"}
    assert "None." in texts(app.success)  # no failure on this phone

    app.radio(key="metric").set_value("inference_p95_us").run()
    assert "p95 latency" in figures(app)["latency"].layout.yaxis.title.text


@pytest.mark.slow  # a Streamlit AppTest run
def test_device_page_shows_sensor_throttling(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, DEVICE)
    app.selectbox(key="device").set_value("lab-low").run()
    assert not app.exception
    assert metrics(app)["Tier"] == "low"
    warnings = texts(app.warning)
    assert "36 repetition(s) ran throttled" in warnings  # 12 two-thread configurations x 3, second run
    throttled = table(app, "throttled")
    assert len(throttled) == 12 and set(throttled["throttled repetitions"]) == {lab.REPETITIONS}
    assert all(configuration.endswith("/x2") for configuration in throttled["configuration"])
    assert "modelled" not in warnings and "virtual" not in warnings.lower()
    charts = figures(app)
    assert "after, throttled" in {trace.name for trace in charts["temperatures"].data}
    assert {trace.name for trace in charts["energy"].data} == {"measured (fuel gauge)"}
    failed = table(app, "device_failures")
    assert set(failed["status"]) == {"failed"} and set(failed["error_type"]) == {"crash"}
    assert len(failed) == lab.REPETITIONS


@pytest.fixture(scope="module")
def virtual_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("virtual_results")
    lab.write_virtual_results(root)
    return root


@pytest.mark.slow  # a Streamlit AppTest run
def test_a_virtual_device_says_so_and_its_modelled_sensors_throttle_nothing(
    virtual_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for page in (OVERVIEW, RANKINGS, DEVICE, POLICY):
        app = open_app(virtual_root, monkeypatch, page)
        assert not app.exception
        assert "Virtual devices" in texts(app.warning), page  # every page says its numbers are virtual
    app = open_app(virtual_root, monkeypatch, DEVICE)
    app.selectbox(key="device").set_value(lab.VIRTUAL_PHONES[1].serial).run()
    assert "a virtual device" in texts(app.caption) and "virtual device" in texts(app.info)
    # Its modelled zones ran above the 45 degC threshold, yet nothing claims it throttled.
    assert "modelled temperatures, not measured" in texts(app.info)
    assert "ran throttled" not in texts(app.warning)
    charts = figures(app)
    assert {trace.name for trace in charts["temperatures"].data} == {
        "before the case (modelled)",
        "after the case (modelled)",
    }
    assert "modelled, not measured" in texts(app.warning)
    assert {trace.name for trace in charts["energy"].data} == {"modelled, not measured"}


@pytest.mark.slow  # a Streamlit AppTest run
def test_mixed_kinds_are_refused_on_the_page_until_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.write_lab_results(tmp_path)
    lab.write_virtual_results(tmp_path)
    app = open_app(tmp_path, monkeypatch, RANKINGS)
    errors = texts(app.error)
    assert "mixes physical and virtual devices" in errors and "--allow-mixed-kinds" in errors
    app.sidebar.toggle(key="allow_mixed_kinds").set_value(True).run()
    # A phone lab's benchmark_model and the virtual farm's runner are different instruments too.
    assert "mixes rows from 2 benchmark binaries" in texts(app.error) and "--allow-mixed-binaries" in texts(app.error)
    app.sidebar.toggle(key="allow_mixed_binaries").set_value(True).run()
    assert not app.error and table(app, "best_per_tier") is not None
    # Energy: only measured figures rank; the virtual phones' modelled energy is left out, not ranked.
    app.selectbox(key="rank_metric").set_value("energy_mj_per_inference").run()
    assert not app.exception


@pytest.mark.slow  # a Streamlit AppTest run
def test_device_page_lists_a_failing_delegate(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, DEVICE)
    app.selectbox(key="device").set_value(lab.GPU_FAILED_SERIAL).run()
    failed = table(app, "device_failures")
    assert len(failed) == 2 * 4 * 2 * lab.REPETITIONS
    assert set(failed["status"]) == {"delegate_failed"}
    assert all(configuration.split("/")[1] == "gpu" for configuration in failed["configuration"])
    latency = figures(app)["latency"]
    assert not any("gpu" in str(x) for trace in latency.data for x in trace.x)  # no made-up GPU numbers


# -- Sustained ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sustained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sustained_results")
    lab.write_lab_results(root)  # burst rows alongside: the page must leave them out
    lab.write_sustained_results(root)
    return root


def _shapes(figure: go.Figure) -> dict[str, list[float]]:
    """Rule lines of a figure: vertical ones' x and horizontal ones' y."""
    lines: dict[str, list[float]] = {"x": [], "y": []}
    for shape in figure.layout.shapes:
        if shape.x0 == shape.x1 and shape.xref == "x":
            lines["x"].append(shape.x0)
        elif shape.y0 == shape.y1 and shape.yref == "y":
            lines["y"].append(shape.y0)
    return lines


@pytest.mark.slow  # a Streamlit AppTest run
def test_sustained_page_shows_the_throttle_of_a_physical_phone(
    sustained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(sustained_root, monkeypatch, SUSTAINED)
    app.selectbox(key="sustained_device").set_value(lab.SUSTAINED_PHONE.serial).run()
    options = app.selectbox(key="sustained_case").options
    assert len(options) == 2 and options[0].startswith("int8/xnnpack/x2")  # the case that lost most, first
    assert app.selectbox(key="sustained_case").value == options[0]
    assert not app.exception, [e.message for e in app.exception]
    shown = metrics(app)
    throttle_at = lab.THROTTLE_WINDOW * lab.WINDOW_S
    # The one slow window before it (SPIKE_WINDOW) is noise: the throttle is where the slow-down lasts.
    assert shown == {
        "Burst p50": "50.00 ms",
        "Sustained p50": "70.00 ms",
        "Sustained / burst": "x1.40",
        "First lasting slow-down": f"window {lab.THROTTLE_WINDOW}",
        "Deadline misses": "30%–62%",
    }
    assert "first throttle: window 4 at 240 s" in texts(app.caption)  # harness.sustained.describe's line
    assert "First lasting slow-down: window 4 at 240 s, p50 +40% over the first window" in texts(app.caption)
    # The sidebar's selection holds the virtual phone too (the session's banner); this case's own figures are measured.
    assert "Modelled, not measured" not in texts(app.warning) and "virtual phone" not in texts(app.info)
    assert "temperatures: `sensor` (measured (thermal zones))" in texts(app.caption)

    charts = figures(app)
    latency = charts["sustained_latency"]
    by_name = {trace.name: trace for trace in latency.data}
    assert set(by_name) == {"p50", "p95"}
    assert list(by_name["p50"].x) == [w * lab.WINDOW_S for w in range(lab.WINDOWS)]
    assert by_name["p50"].y[-1] == pytest.approx(lab.SUSTAINED_THROTTLED_US / 1000)
    assert _shapes(latency) == {"x": [throttle_at], "y": [pytest.approx(1000 / lab.FPS)]}  # throttle, deadline
    assert _shapes(charts["sustained_temperature"])["x"] == [throttle_at]
    assert "modelled" not in charts["sustained_temperature"].layout.title.text
    clocks = charts["sustained_clocks"]
    big = next(trace for trace in clocks.data if trace.name == "cluster 1")
    # The window's mean clock (time_in_state) where the phone reports it.
    assert big.y[0] == pytest.approx(lab.CLUSTERS_KHZ[1] * 0.98 / 1e6)
    assert big.y[-1] == pytest.approx(lab.THROTTLED_KHZ[1] * 0.98 / 1e6)
    assert _shapes(clocks)["x"] == [throttle_at]

    cases = table(app, "sustained")
    assert len(cases) == 3  # two cases on lab-low, one on the virtual phone; burst rows left out
    worst = cases.iloc[0]  # worst ratio first
    assert worst["configuration"] == "int8/xnnpack/x2" and worst["sustained / burst"] == pytest.approx(1.4)
    assert worst["first lasting slow-down"] == "window 4 at 240 s" and worst["deadline misses"] == "30%–62%"
    steady = cases[cases["configuration"] == "int8/gpu/x1"].iloc[0]
    assert steady["sustained / burst"] == pytest.approx(1.0) and steady["first lasting slow-down"] == "none"


@pytest.mark.slow  # a Streamlit AppTest run
def test_sustained_page_labels_a_virtual_phones_modelled_figures(
    sustained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(sustained_root, monkeypatch, SUSTAINED)
    app.selectbox(key="sustained_device").set_value(lab.SUSTAINED_VIRTUAL.serial).run()
    assert not app.exception, [e.message for e in app.exception]
    shown = metrics(app)
    assert shown == {
        "Burst p50": "900 µs",
        "Sustained p50": "900 µs",
        "Sustained / burst": "x1.00",
        "First lasting slow-down": "none",
    }  # no --fps: no deadline figure
    assert "virtual phone" in texts(app.info) and "never throttles" in texts(app.info)
    warning = texts(app.warning)
    assert "Modelled, not measured" in warning and "temperatures, CPU clocks, power" in warning
    charts = figures(app)
    assert "modelled" in charts["sustained_temperature"].layout.title.text
    assert {trace.name for trace in charts["sustained_temperature"].data} == {"modelled, not measured"}
    assert "modelled" in charts["sustained_clocks"].layout.title.text
    # No mean clock from the model: the clock at each window's end is drawn.
    assert {trace.name for trace in charts["sustained_clocks"].data} == {"cluster 0", "cluster 1"}
    assert all(y == pytest.approx(2.9) for trace in charts["sustained_clocks"].data for y in trace.y)
    assert not _shapes(charts["sustained_latency"])["x"] and not _shapes(charts["sustained_latency"])["y"]
    sustained = table(app, "sustained")
    virtual = sustained[sustained["device"].str.contains("virtual")].iloc[0]
    assert virtual["modelled"] == "temperatures, clocks, power" and virtual["deadline misses"] == "no --fps"


@pytest.mark.slow  # a Streamlit AppTest run
def test_sustained_page_without_sustained_rows_says_how_to_get_them(
    lab_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = open_app(lab_root, monkeypatch, SUSTAINED)
    assert "harness run --sustained 10m --fps 15" in texts(app.info)
    assert not app.get("plotly_chart") and not app.metric


# -- Rankings ---------------------------------------------------------------------------------


@pytest.mark.slow  # a Streamlit AppTest run
def test_rankings_show_each_tiers_winner_and_ties(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, RANKINGS)
    best = table(app, "best_per_tier")
    assert list(best["tier"]) == list(lab.TIERS)  # tiers.toml order
    winners = dict(zip(best["tier"], best["best"], strict=False))
    # In high the GPU ignores the thread count: fp16/gpu at 1 and 2 threads are shown within 5% of each other
    # (6 repetitions, 1% noise), a tie the fewer threads win; fp32/gpu is 5% slower (shown), not tied.
    assert winners == {"high": "fp16/gpu/x1", "mid": "int8/xnnpack/x2", "low": "int8/xnnpack/x2"}
    high = best.set_index("tier").loc["high"]
    assert high["tied with best"] == "fp16/gpu/x2" and high["tie decided by"] == "threads"
    assert "fp16/gpu/x1 is tied with fp16/gpu/x2 (shown within 5% on every device)" in texts(app.info)

    ranked = table(app, "ranking")  # tier high, the first
    assert list(ranked["rank"][:5]) == ["=1", "=1", "=3", "=3", "5"]
    assert set(ranked["config"][:2]) == {"fp16/gpu/x1", "fp16/gpu/x2"}
    assert ranked["versus_best"].iloc[1] == "within 5% of the best on every device"
    assert ranked["versus_best"].iloc[2].endswith("slower than the best (shown)")
    charts = figures(app)
    bars = [trace for trace in charts["ranking_bars"].data if trace.type == "bar"]
    labels = {x: text for trace in bars for x, text in zip(trace.x, trace.text, strict=False)}
    assert labels["fp16/gpu/x1"] == "=1" and labels["int8/xnnpack/x2"] == "5"
    heat = {trace.name: trace for trace in charts["ranking_heatmap"].data}
    assert list(heat) == list(lab.VARIANTS)
    fp16 = heat["fp16"]
    assert list(fp16.text[list(fp16.y).index("gpu")]) == ["=1", "=1"]


@pytest.mark.slow  # a Streamlit AppTest run
def test_rankings_show_exclusions_with_their_reason(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, RANKINGS)
    app.radio(key="rank_tier").set_value("mid").run()
    ranked = table(app, "ranking")
    excluded = ranked[ranked["status"] == "excluded"]
    assert len(excluded) == 4 * 2  # every GPU configuration: the delegate failed on lab-mid-2
    assert set(excluded["rank"]) == {"-"}
    assert all("delegate_failed on Nord CE" in reason for reason in excluded["reason"])
    heat = {trace.name: trace for trace in figures(app)["ranking_heatmap"].data}
    assert list(heat["int8"].text[list(heat["int8"].y).index("gpu")]) == ["✗", "✗"]

    app.radio(key="rank_tier").set_value("low").run()
    ranked = table(app, "ranking")
    crash = ranked[ranked["config"] == "fp32/cpu/x2"].iloc[0]
    assert crash["status"] == "excluded" and "failed (crash) on Moto E" in crash["reason"]


@pytest.mark.slow  # a Streamlit AppTest run
def test_rankings_follow_the_chosen_metric(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, RANKINGS)
    app.selectbox(key="rank_metric").set_value("accuracy_drop").run()
    assert not app.exception
    best = table(app, "best_per_tier")
    assert all(config.startswith("fp32/") for config in best["best"])  # the only variant with no drop
    assert "accuracy drop vs fp32" in figures(app)["ranking_bars"].layout.yaxis.title.text
    app.selectbox(key="rank_metric").set_value("memory_mb").run()
    assert "peak memory" in figures(app)["ranking_bars"].layout.yaxis.title.text


# -- Pareto -----------------------------------------------------------------------------------


@pytest.mark.slow  # a Streamlit AppTest run
def test_pareto_highlights_the_front(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, PARETO)
    app.radio(key="pareto_tier").set_value("mid").run()
    front = table(app, "front")
    # The fastest configuration of each variant: every other one is slower at the same drop and size.
    assert set(front["config"]) == {"int8/xnnpack/x2", "dynamic/xnnpack/x2", "fp16/xnnpack/x2", "fp32/xnnpack/x2"}
    assert "On the front in tier mid: 4 of 16 candidates" in texts(app.subheader)
    scatter = figures(app)["pareto"]
    on_front = [trace for trace in scatter.data if trace.name.startswith("Pareto front")]
    assert {label for trace in on_front for label in trace.text} == set(front["config"])
    assert scatter.layout.yaxis.title.text == "accuracy drop vs fp32 (host)"


@pytest.mark.slow  # a Streamlit AppTest run
def test_pareto_without_accuracy_uses_latency_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.write_lab_results(tmp_path)
    for path in (tmp_path / "accuracy").iterdir():
        path.unlink()  # as after converting untrained weights: no accuracy figures at all
    app = open_app(tmp_path, monkeypatch, PARETO)
    assert "No accuracy figures" in texts(app.info)
    assert figures(app)["pareto"].layout.yaxis.title.text == "model size (bytes)"
    assert len(table(app, "front")) >= 1


# -- Compare runs -----------------------------------------------------------------------------


@pytest.mark.slow  # a Streamlit AppTest run
def test_compare_runs_puts_the_regression_first(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, COMPARE)
    assert app.selectbox(key="run_a").value == lab.RUN_A and app.selectbox(key="run_b").value == lab.RUN_B
    assert metrics(app) == {
        "Regression": "1",
        "Newly failing": "1",
        "Suspicious": "0",
        "Improvement": "0",
        "Fixed": "0",
        "Unchanged": "86",
    }
    changes = table(app, "changes")
    first = changes.iloc[0]
    assert (first["verdict"], first["serial"], first["variant"], first["delegate"], first["num_threads"]) == (
        "regression",
        lab.REGRESSION["serial"],
        lab.REGRESSION["variant"],
        lab.REGRESSION["delegate"],
        lab.REGRESSION["num_threads"],
    )
    assert first["change_pct"] == pytest.approx((lab.REGRESSION["factor"] - 1) * 100, abs=3)
    assert first["change_low"] > 0.05  # shown slower by more than the 5% threshold: the whole interval is past it
    second = changes.iloc[1]
    assert (second["verdict"], second["serial"], second["failures_new"]) == (
        "newly failing",
        "lab-low",
        "failed (crash)",
    )
    assert set(changes["verdict"].iloc[2:]) == {"unchanged", "failing in both"}
    worse = texts(app.markdown)
    assert "Got worse in run B** (2), so `harness compare` fails" in worse
    assert re.search(
        r"\*\*mid\*\* · Galaxy A54 \(`lab-mid-1`\) · `fp32/cpu/x1`: \+(2[5-9]|3[0-5])\.\d% p50 "
        r"\([0-9.]+ ms -> [0-9.]+ ms\), interval \+[0-9.]+%\.\.\+[0-9.]+%",
        worse,
    )  # +30%, give or take
    assert "**low** · Moto E (`lab-low`) · `fp32/cpu/x2`: now fails: failed (crash)" in worse
    regression = [t for t in figures(app)["run_changes"].data if t.name == "regression"]
    assert len(regression) == 1 and len(regression[0].x) == 1

    app.selectbox(key="run_a").set_value(lab.RUN_B)
    app.selectbox(key="run_b").set_value(lab.RUN_A).run()
    assert metrics(app)["Improvement"] == "1" and metrics(app)["Fixed"] == "1" and metrics(app)["Regression"] == "0"


@pytest.mark.slow  # a Streamlit AppTest run
def test_compare_runs_needs_two_runs(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, COMPARE)
    app.sidebar.toggle(key="all_runs").set_value(False).run()
    assert "Comparing needs two runs" in texts(app.info)
    assert not app.exception and not app.get("plotly_chart")


# -- Policy -----------------------------------------------------------------------------------


@pytest.mark.slow  # a Streamlit AppTest run
def test_policy_page_is_what_harness_policy_derive_writes(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.policy import DeriveRequest, derive

    app = open_app(lab_root, monkeypatch, POLICY)
    shown = table(app, "policy_tiers")
    document = derive(DeriveRequest(results_root=lab_root, model_name=lab.MODEL)).document
    expected = {
        (e["name"], e["rule"]): f"{e['choice']['variant']}/{e['choice']['delegate']}/x{e['choice']['num_threads']}"
        for e in document["tiers"]
    }
    assert dict(zip(zip(shown["tier"], shown["rule"], strict=False), shown["choice"], strict=False)) == expected
    choices = dict(zip(shown["tier"], shown["choice"], strict=False))
    assert choices == {"high": "fp16/gpu/x1", "mid": "int8/xnnpack/x2", "low": "int8/xnnpack/x2"}
    assert "harness policy derive --results" in texts(app.code) and f"--model {lab.MODEL}" in texts(app.code)
    assert app.download_button[0].label == "Download policy JSON"

    assert metrics(app) == {
        "Best or within 5% of it": "100%",
        "Failed choices": "0",
        "Goal (≥ 95 %, no failed choice)": "met",
    }
    coverage = table(app, "coverage")
    assert set(coverage["serial"]) == {phone.serial for phone in lab.PHONES}
    assert {x for trace in figures(app)["coverage"].data for x in trace.x} == {
        f"{p.model} ({p.serial})" for p in lab.PHONES
    }


@pytest.mark.slow  # a Streamlit AppTest run
def test_policy_constraints_change_the_choice(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, POLICY)
    app.number_input(key="max_accuracy_drop").set_value(0.01).run()
    choices = dict(zip(table(app, "policy_tiers")["tier"], table(app, "policy_tiers")["choice"], strict=False))
    assert choices["mid"] == "dynamic/xnnpack/x2" and choices["low"] == "dynamic/xnnpack/x2"  # int8 drops 0.025
    assert "--max-accuracy-drop 0.01" in texts(app.code)

    app.number_input(key="max_latency_us").set_value(1.0).run()  # nothing is that fast
    assert not app.exception
    message = texts(app.error)
    assert "No policy for these settings" in message and "max_latency_us" in message
    assert not app.download_button


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.slow  # a Streamlit AppTest run
def test_missing_folder_says_how_to_get_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    app = open_app(tmp_path / "nowhere", monkeypatch, page)
    message = texts(app.error)
    assert "There is no results folder" in message and "harness demo" in message
    assert not app.get("plotly_chart")


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.slow  # a Streamlit AppTest run
def test_empty_folder_says_no_results_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    app = open_app(tmp_path, monkeypatch, page)
    assert "No results in" in texts(app.info) and "harness run" in texts(app.info)
    assert not app.error and not app.get("plotly_chart")


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.slow  # a Streamlit AppTest run
def test_newer_schema_names_the_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    lab.write_lab_results(tmp_path)
    future = lab.write_newer_schema_file(tmp_path)
    app = open_app(tmp_path, monkeypatch, page)
    message = texts(app.error)
    assert f"{future} is results file v4, but this tflite-farm reads up to v3" in message
    assert "pip install -U tflite-farm" in message
    assert not app.get("plotly_chart")


@pytest.mark.slow  # a Streamlit AppTest run
def test_damaged_file_is_a_warning_and_the_rest_still_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.write_lab_results(tmp_path)
    damaged = lab.write_damaged_file(tmp_path)
    app = open_app(tmp_path, monkeypatch)
    warning = texts(app.warning)
    assert "1 file(s) could not be read" in warning and str(damaged) in warning
    assert "not a readable Parquet file" in warning
    assert metrics(app)["Runs"] == "2" and metrics(app)["Rows ok"] == "525"


@pytest.fixture(scope="module")
def failures_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("only_failures")
    lab.write_only_failures(root)
    return root


@pytest.mark.slow  # a Streamlit AppTest run
def test_a_run_with_only_failures_explains_itself(failures_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(failures_root, monkeypatch, OVERVIEW)
    assert metrics(app)["Rows ok"] == "0" and metrics(app)["Rows failed"] == "12"
    assert "No case of the selected runs produced a measurement" in texts(app.info)
    failures = table(app, "failures")
    assert set(failures["status"]) == {"failed", "timeout", "device_lost"}
    assert failures.iloc[0]["error_message"] == lab.CRASH_MESSAGE

    app = open_app(failures_root, monkeypatch, DEVICE)
    assert "lab-mid-2 has no successful measurement" in texts(app.info)
    assert "No power figures" in texts(app.info)
    assert len(table(app, "device_failures")) == 12

    app = open_app(failures_root, monkeypatch, RANKINGS)
    assert "No configuration qualifies in tier mid" in texts(app.warning)
    assert set(table(app, "ranking")["status"]) == {"excluded"}

    app = open_app(failures_root, monkeypatch, PARETO)
    assert "No candidate in tier mid" in texts(app.warning)

    app = open_app(failures_root, monkeypatch, COMPARE)
    assert "Comparing needs two runs of digits_cnn, and one is stored" in texts(app.info)

    app = open_app(failures_root, monkeypatch, POLICY)
    assert "No policy for these settings: no valid configuration for tier mid" in texts(app.error)
    assert not app.get("plotly_chart")


# -- harness dashboard -----------------------------------------------------------------------


def test_cli_refuses_a_missing_results_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--results", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no results folder at" in result.output and "run 'harness demo' or 'harness run' first" in result.output


def test_cli_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["dashboard", "--results", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.output


def test_cli_serves_the_app_on_loopback_only(tmp_path: Path) -> None:
    command = streamlit_command(tmp_path, 8600)
    assert command[1:4] == ["-m", "streamlit", "run"] and Path(command[4]) == APP
    options = dict(zip(command[5 : command.index("--") : 2], command[6 : command.index("--") : 2], strict=False))
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.port"] == "8600"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert command[command.index("--") :] == ["--", "--results", str(tmp_path)]


@pytest.fixture(scope="module")
def android_15_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Published figures of two phones (nnapi among the delegates), the Pixel 3's rows as if on Android 15."""
    import dataclasses

    import published_phones as published

    root = tmp_path_factory.mktemp("android_15") / "results"
    store = ResultsStore(root)
    rows = [dataclasses.replace(row, android_sdk=35) if row.serial == "pixel3" else row for row in published.rows()]
    for serial in published.PHONES:
        store.append([row for row in rows if row.serial == serial])
    published.write_manifest(root.parent / "models")
    return root


@pytest.mark.slow  # a Streamlit AppTest run
def test_rankings_flag_nnapi_measured_on_android_15(android_15_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.deprecations import NNAPI_DEPRECATION

    app = open_app(android_15_root, monkeypatch, RANKINGS)
    app.sidebar.selectbox(key="model").set_value("mobilenet_v2").run()
    assert not app.exception, [e.message for e in app.exception]
    ranked = table(app, "ranking").set_index("config")
    flag = f"{NNAPI_DEPRECATION} (measured on Pixel 3 (SDK 35))"
    assert ranked.loc["fp32/nnapi/x4", "deprecation"] == flag
    assert ranked["deprecation"].notna().sum() == 1  # GM1901 is on SDK 29, and only nnapi rows are flagged
    captions = texts(app.caption)
    assert "NNAPI deprecated" in captions and "Measured here on Pixel 3 (SDK 35)" in captions


@pytest.mark.slow  # a Streamlit AppTest run
def test_rankings_without_nnapi_show_no_deprecation(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = open_app(lab_root, monkeypatch, RANKINGS)
    assert "deprecation" not in table(app, "ranking").columns
    assert "NNAPI deprecated" not in texts(app.caption)
