"""`harness binaries fetch|ls` against a real HTTP server on loopback laid out like Google's bucket."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import stat
import threading
import tomllib
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.binaries import cached_path
from harness.commands import main
from harness.config import packaged_defaults
from harness.phone.profiles import load_binaries, load_farm
from harness.records import BenchmarkDialect

CLASSIC_ARM64 = (
    "tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest/android_aarch64_benchmark_model"
)
CLASSIC_ARM = "tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest/android_arm_benchmark_model"
LITERT_ARM64 = "litert/binaries/2.3.0/android_arm64/benchmark_model"
OFFICIAL = "https://storage.googleapis.com"
USER_COMMENT = "# my lab: the Pixel rack lives on hub 3"


class _BucketServer(ThreadingHTTPServer):
    requests: list[str]  # paths asked for, in order
    truncated: set[str]  # paths served with a Content-Length longer than the body
    stalled: set[str]  # paths that send half the body, then wait for `release`
    release: threading.Event


class _Handler(SimpleHTTPRequestHandler):
    server: _BucketServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path in self.server.truncated:
            body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 50_000))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if self.path in self.server.stalled:
            body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.release.wait(30)  # until the test is over: the client must give up first
            return
        super().do_GET()


class Bucket:
    """A loopback server with files under `root` at the official bucket's paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = _BucketServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.server.requests = []
        self.server.truncated = set()
        self.server.stalled = set()
        self.server.release = threading.Event()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def put(self, path: str, data: bytes) -> str:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def truncate(self, path: str) -> None:
        self.server.truncated.add(f"/{path}")

    def stall(self, path: str) -> None:
        self.server.stalled.add(f"/{path}")

    def close(self) -> None:
        self.server.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _program(seed: bytes, size: int = 300_000) -> bytes:
    """Bytes that stand in for an ELF executable (several read chunks long)."""
    out = bytearray(b"\x7fELF")
    block = seed
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


@pytest.fixture
def bucket(tmp_path: Path):
    server = Bucket(tmp_path / "bucket")
    server.put(CLASSIC_ARM64, _program(b"classic-arm64"))
    server.put(CLASSIC_ARM, _program(b"classic-arm"))
    server.put(LITERT_ARM64, _program(b"litert-arm64"))
    yield server
    server.close()


@pytest.fixture
def farm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped farm.toml with a comment and a server table of the user's own; a private cache."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "profiles" / "farm.toml"
    path.parent.mkdir()
    path.write_text(
        (packaged_defaults() / "farm.toml").read_text(encoding="utf-8")
        + f'\n{USER_COMMENT}\n[[servers]]\nhost = "10.0.0.21"\nport = 5037\n',
        encoding="utf-8",
    )
    return path


def _harness(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _fetch(farm: Path, bucket: Bucket | str, *args: str):
    mirror = bucket.url if isinstance(bucket, Bucket) else bucket
    return _harness("binaries", "fetch", "--mirror", mirror, "--farm-file", str(farm), "--json", *args)


def _binaries_table(farm: Path) -> dict:
    return tomllib.loads(farm.read_text(encoding="utf-8")).get("binaries", {})


def _lock(farm: Path) -> dict:
    return tomllib.loads((farm.parent / "binaries.lock").read_text(encoding="utf-8"))


def _cached_files(cache: Path) -> list[Path]:
    folder = cache / "binaries"
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def test_fetch_caches_pins_and_wires_and_a_second_fetch_downloads_nothing(bucket: Bucket, farm: Path, tmp_path: Path):
    result = _fetch(farm, bucket)
    assert result.exit_code == 0, result.output
    sha = hashlib.sha256((bucket.root / CLASSIC_ARM64).read_bytes()).hexdigest()
    cached = tmp_path / "cache" / "binaries" / sha[:16] / "android_aarch64_benchmark_model"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert stat.S_IMODE(cached.stat().st_mode) == 0o755
    assert _cached_files(tmp_path / "cache") == [cached]  # no temporary file left behind

    (fetched,) = json.loads(result.stdout)["binaries"]
    assert (fetched["action"], fetched["sha256"], fetched["path"]) == ("downloaded", sha, str(cached))

    lock_text = (farm.parent / "binaries.lock").read_text(encoding="utf-8")
    assert lock_text.startswith("# Pinned benchmark binaries")
    lock = tomllib.loads(lock_text)
    assert lock["schema_version"] == 1
    (entry,) = lock["binaries"]
    assert entry["dialect"] == "classic" and entry["abi"] == "arm64-v8a"
    assert entry["url"] == f"{OFFICIAL}/{CLASSIC_ARM64}"
    assert (entry["sha256"], entry["size_bytes"]) == (sha, cached.stat().st_size)
    assert entry["fetched_at"].endswith("Z")

    text = farm.read_text(encoding="utf-8")
    assert USER_COMMENT in text and "# Benchmark programs per ABI" in text
    assert _binaries_table(farm) == {"arm64-v8a": str(cached)}
    # What harness run reads today, and the user's server table, both survive the edit.
    assert load_binaries(farm) == {"arm64-v8a": (cached,)}
    assert [server.address for server in load_farm(farm, environ={})] == ["10.0.0.21:5037"]

    served = len(bucket.requests)
    again = _fetch(farm, bucket)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["binaries"][0]["action"] == "cached"
    assert len(bucket.requests) == served
    assert (farm.parent / "binaries.lock").read_text(encoding="utf-8") == lock_text


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_locked_and_cached_binary_needs_no_network(bucket: Bucket, farm: Path):
    assert _fetch(farm, bucket).exit_code == 0
    result = _fetch(farm, _closed_port_url())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["binaries"][0]["action"] == "cached"


def test_changed_bytes_are_refused_until_update(bucket: Bucket, farm: Path, tmp_path: Path, monkeypatch):
    first = _fetch(farm, bucket)
    assert first.exit_code == 0, first.output
    old_sha = json.loads(first.stdout)["binaries"][0]["sha256"]
    lock_before = (farm.parent / "binaries.lock").read_text(encoding="utf-8")
    farm_before = farm.read_text(encoding="utf-8")

    # Another machine with the same lock, after the nightly changed.
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "other-cache"))
    new_sha = bucket.put(CLASSIC_ARM64, _program(b"tomorrow's nightly"))
    refused = _fetch(farm, bucket)
    assert refused.exit_code == 2
    assert f"{bucket.url}/{CLASSIC_ARM64}" in refused.stderr
    assert old_sha in refused.stderr and new_sha in refused.stderr and "--update" in refused.stderr
    assert (farm.parent / "binaries.lock").read_text(encoding="utf-8") == lock_before
    assert farm.read_text(encoding="utf-8") == farm_before
    assert _cached_files(tmp_path / "other-cache") == []

    updated = _fetch(farm, bucket, "--update")
    assert updated.exit_code == 0, updated.output
    (fetched,) = json.loads(updated.stdout)["binaries"]
    assert (fetched["action"], fetched["sha256"], fetched["previous_sha256"]) == ("updated", new_sha, old_sha)
    assert [entry["sha256"] for entry in _lock(farm)["binaries"]] == [new_sha]
    new_path = cached_path(tmp_path / "other-cache", new_sha, "android_aarch64_benchmark_model")
    assert _binaries_table(farm) == {"arm64-v8a": str(new_path)}  # the old pin's path is replaced, not kept
    assert USER_COMMENT in farm.read_text(encoding="utf-8")


def test_a_truncated_download_caches_and_locks_nothing(bucket: Bucket, farm: Path, tmp_path: Path):
    farm_before = farm.read_text(encoding="utf-8")
    bucket.truncate(CLASSIC_ARM64)
    result = _fetch(farm, bucket)
    assert result.exit_code == 2
    assert f"{bucket.url}/{CLASSIC_ARM64}" in result.stderr and "cut short" in result.stderr
    assert "--binary arm64-v8a=PATH" in result.stderr
    assert _cached_files(tmp_path / "cache") == []
    assert not (farm.parent / "binaries.lock").exists()
    assert farm.read_text(encoding="utf-8") == farm_before


def test_a_server_that_stops_sending_times_out(bucket: Bucket, farm: Path, tmp_path: Path):
    bucket.stall(CLASSIC_ARM64)
    result = _fetch(farm, bucket, "--timeout", "0.5")
    assert result.exit_code == 2
    assert f"{bucket.url}/{CLASSIC_ARM64}" in result.stderr and "timed out" in result.stderr
    assert _cached_files(tmp_path / "cache") == []
    assert not (farm.parent / "binaries.lock").exists()


def test_a_missing_file_names_the_url(bucket: Bucket, farm: Path):
    (bucket.root / CLASSIC_ARM).unlink()
    result = _fetch(farm, bucket, "--abi", "armeabi-v7a")
    assert result.exit_code == 2
    assert f"{bucket.url}/{CLASSIC_ARM}" in result.stderr and "HTTP 404" in result.stderr
    assert "--binary armeabi-v7a=PATH" in result.stderr and "--mirror" in result.stderr
    assert not (farm.parent / "binaries.lock").exists()


def test_all_or_nothing_when_one_of_several_fails(bucket: Bucket, farm: Path, tmp_path: Path):
    (bucket.root / CLASSIC_ARM).unlink()
    result = _fetch(farm, bucket, "--abi", "arm64-v8a,armeabi-v7a")
    assert result.exit_code == 2
    assert _cached_files(tmp_path / "cache") == []
    assert not (farm.parent / "binaries.lock").exists()


def test_a_refused_connection_names_the_url_and_the_way_around(farm: Path):
    mirror = _closed_port_url()
    result = _fetch(farm, mirror)
    assert result.exit_code == 2
    assert f"{mirror}/{CLASSIC_ARM64}" in result.stderr
    assert "--binary arm64-v8a=PATH" in result.stderr and "[binaries]" in result.stderr
    assert "Traceback" not in result.output


def test_x86_64_has_no_official_build(bucket: Bucket, farm: Path):
    result = _fetch(farm, bucket, "--abi", "arm64-v8a,x86_64")
    assert result.exit_code == 2
    assert "no official classic benchmark binary for x86_64" in result.stderr
    assert "--config=android_x86_64" in result.stderr and "--binary x86_64=PATH" in result.stderr
    assert "classic: arm64-v8a, armeabi-v7a; litert: arm64-v8a" in result.stderr
    assert bucket.requests == []  # refused before anything was downloaded
    litert = _fetch(farm, bucket, "--abi", "armeabi-v7a", "--dialect", "litert")
    assert litert.exit_code == 2 and "litert: arm64-v8a" in litert.stderr


def test_both_dialects_for_one_abi_become_a_list_beside_the_users_own_path(bucket: Bucket, farm: Path):
    own = "/opt/lab/benchmark_model_with_hexagon"
    farm.write_text(
        farm.read_text(encoding="utf-8") + f'\n[binaries]\n"arm64-v8a" = "{own}"  # built in-house\n', encoding="utf-8"
    )
    classic = _fetch(farm, bucket)
    assert classic.exit_code == 0, classic.output
    litert = _fetch(farm, bucket, "--dialect", "litert", "--litert-version", "2.3.0")
    assert litert.exit_code == 0, litert.output
    classic_path = json.loads(classic.stdout)["binaries"][0]["path"]
    (fetched,) = json.loads(litert.stdout)["binaries"]
    assert fetched["url"] == f"{OFFICIAL}/{LITERT_ARM64}" and fetched["dialect"] == BenchmarkDialect.LITERT.value
    assert _binaries_table(farm) == {"arm64-v8a": [own, classic_path, fetched["path"]]}
    assert all(Path(path).is_absolute() for path in _binaries_table(farm)["arm64-v8a"])
    assert [(entry["dialect"], entry["abi"]) for entry in _lock(farm)["binaries"]] == [
        ("classic", "arm64-v8a"),
        ("litert", "arm64-v8a"),
    ]

    # A new classic nightly replaces only the classic path.
    new_sha = bucket.put(CLASSIC_ARM64, _program(b"next classic"))
    assert _fetch(farm, bucket, "--update").exit_code == 0
    paths = _binaries_table(farm)["arm64-v8a"]
    assert paths[0] == own and paths[2] == fetched["path"] and new_sha[:16] in paths[1]
    assert len(paths) == 3 and USER_COMMENT in farm.read_text(encoding="utf-8")


def test_ls_reports_cache_and_farm_state(bucket: Bucket, farm: Path, tmp_path: Path):
    assert _fetch(farm, bucket, "--abi", "arm64-v8a,armeabi-v7a").exit_code == 0
    result = _harness("binaries", "ls", "--farm-file", str(farm), "--json")
    assert result.exit_code == 0, result.output
    pins = json.loads(result.stdout)
    assert [(pin["abi"], pin["in_cache"], pin["in_farm"]) for pin in pins] == [
        ("arm64-v8a", True, True),
        ("armeabi-v7a", True, True),
    ]

    Path(pins[0]["path"]).write_bytes(b"corrupted")
    table = tomllib.loads(farm.read_text(encoding="utf-8"))["binaries"]
    farm.write_text(
        farm.read_text(encoding="utf-8").replace(table["armeabi-v7a"], "/elsewhere/benchmark_model"), encoding="utf-8"
    )
    pins = json.loads(_harness("binaries", "ls", "--farm-file", str(farm), "--json").stdout)
    assert [(pin["abi"], pin["in_cache"], pin["in_farm"]) for pin in pins] == [
        ("arm64-v8a", False, True),
        ("armeabi-v7a", True, False),
    ]

    # A corrupted cache copy is downloaded again, not trusted.
    served = len(bucket.requests)
    again = _fetch(farm, bucket)
    assert again.exit_code == 0 and len(bucket.requests) == served + 1
    assert json.loads(again.stdout)["binaries"][0]["action"] == "unchanged"


def test_a_newer_lock_is_refused(bucket: Bucket, farm: Path):
    (farm.parent / "binaries.lock").write_text("schema_version = 2\n", encoding="utf-8")
    result = _fetch(farm, bucket)
    assert result.exit_code == 2
    assert "binaries lock v2" in result.stderr and "upgrade tflite-farm" in result.stderr
    assert bucket.requests == []
    listed = _harness("binaries", "ls", "--farm-file", str(farm))
    assert listed.exit_code == 2 and "binaries lock v2" in listed.stderr


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from harness.locations import user_cache_dir as cache_root

    assert (
        cache_root({"HARNESS_CACHE_DIR": str(tmp_path / "a"), "XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "a"
    )
    assert cache_root({"XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "tflite-farm"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root({}) == tmp_path / "home" / ".cache" / "tflite-farm"
    assert os.path.isabs(cache_root({}))


def test_a_new_litert_version_is_a_new_pin_only_with_update(bucket: Bucket, farm: Path):
    assert _fetch(farm, bucket, "--dialect", "litert", "--litert-version", "2.3.0").exit_code == 0
    newer = LITERT_ARM64.replace("2.3.0", "2.4.0")
    new_sha = bucket.put(newer, _program(b"litert 2.4.0"))
    refused = _fetch(farm, bucket, "--dialect", "litert", "--litert-version", "2.4.0")
    assert refused.exit_code == 2
    assert f"{OFFICIAL}/{LITERT_ARM64}" in refused.stderr and "--update" in refused.stderr
    accepted = _fetch(farm, bucket, "--dialect", "litert", "--litert-version", "2.4.0", "--update")
    assert accepted.exit_code == 0, accepted.output
    assert [(entry["url"], entry["sha256"]) for entry in _lock(farm)["binaries"]] == [(f"{OFFICIAL}/{newer}", new_sha)]
    assert _binaries_table(farm) == {"arm64-v8a": json.loads(accepted.stdout)["binaries"][0]["path"]}
