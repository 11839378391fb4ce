"""Where the tests' captured real outputs live: one definition for every test module.

`tests/data/fixtures/` is a verbatim copy of the project's shared fixtures (benchmark_model logs and
device dumps, each with its source in the README there), so a clone of the repository alone runs
the suite. Missing folders fail collection loudly rather than turning into empty parameter sets.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
BENCHMARK_LOGS = FIXTURES / "benchmark_logs"
DEVICE_DUMPS = FIXTURES / "device_dumps"

for _folder in (BENCHMARK_LOGS, DEVICE_DUMPS):
    if not any(_folder.glob("*.txt")):
        raise FileNotFoundError(f"no captured outputs in {_folder}: restore tests/data/fixtures/ from git")
