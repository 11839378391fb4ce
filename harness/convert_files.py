"""What `harness convert` leaves behind, read and written without the converter: OUT/manifest.json (what each
variant file is) and the accuracy table (results/accuracy/part-*.parquet). The sweep, rankings, policies and the
dashboard read these, so this module imports neither TensorFlow nor numpy."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from harness.atomic import write_atomically
from harness.errors import SchemaError
from harness.locations import DEFAULT_RESULTS
from harness.versioned import checked_version

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
ACCURACY_SCHEMA_VERSION = 1
ACCURACY_VERSION_METADATA_KEY = "tflite_farm.accuracy_schema_version"


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """OUT/manifest.json, or an empty v1 document when there is none yet."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return {"schema_version": MANIFEST_SCHEMA_VERSION, "models": {}}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SchemaError(
            f"{path} is not valid JSON ({error})", f"delete {path} and convert the models in {out_dir} again"
        ) from None
    version = document.get("schema_version") if isinstance(document, dict) else None
    checked_version(path, "convert manifest", version, MANIFEST_SCHEMA_VERSION)
    models = document.get("models")
    if not isinstance(models, dict) or not all(isinstance(entry, dict) for entry in models.values()):
        raise SchemaError(
            f"{path} is not a tflite-farm convert manifest (no models)",
            "convert into an empty folder, or move that file away",
        )
    return cast(dict[str, Any], document)  # a dict: checked_version refused anything else


def write_manifest(out_dir: Path, document: dict[str, object]) -> Path:
    """OUT/manifest.json, written whole (write-then-rename), at the current version."""
    path = Path(out_dir) / MANIFEST_NAME
    payload = (json.dumps({**document, "schema_version": MANIFEST_SCHEMA_VERSION}, indent=2) + "\n").encode("utf-8")
    write_atomically(path, lambda out: out.write(payload))
    return path


def accuracy_schema() -> pyarrow.Schema:
    import pyarrow as pa

    text, f64, i64, flag = pa.string(), pa.float64(), pa.int64(), pa.bool_()
    columns = [
        ("schema_version", i64),
        ("conversion_id", text),
        ("converted_at", pa.timestamp("us", tz="UTC")),
        ("model_name", text),
        ("source_sha256", text),
        ("variant", text),
        ("quantization", text),
        ("status", text),
        ("error_message", text),
        ("file", text),
        ("sha256", text),
        ("size_bytes", i64),
        ("fully_int8", flag),
        ("eval_source", text),
        ("eval_samples", i64),
        ("labelled", flag),
        ("reference_accuracy", f64),
        ("accuracy", f64),
        ("accuracy_drop", f64),
        ("agreement", f64),
        ("mse", f64),
        ("max_abs_error", f64),
        ("cosine", f64),
        ("max_accuracy_drop", f64),
        ("max_mse", f64),
        ("accepted", flag),
        ("reason", text),
        ("calibration_source", text),
        ("calibration_samples", i64),
        ("untrained", flag),
        ("converter_version", text),
        ("harness_version", text),
        ("manifest_path", text),
    ]
    return pa.schema(columns, metadata={ACCURACY_VERSION_METADATA_KEY: str(ACCURACY_SCHEMA_VERSION)})


def write_accuracy(rows: list[dict[str, object]], results_root: Path, conversion_id: str) -> Path:
    """One conversion's accuracy rows as results/accuracy/part-<conversion id>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=accuracy_schema())
    path = Path(results_root) / "accuracy" / f"part-{conversion_id}.parquet"
    write_atomically(path, lambda out: pq.write_table(table, out))
    return path


def read_accuracy(results_root: Path = DEFAULT_RESULTS) -> pd.DataFrame:
    """Every accuracy row under <results>/accuracy/ as a DataFrame, oldest conversion first.

    Refuses a file newer than this harness understands rather than dropping it
    silently; skips (and logs) a damaged file or one that is not an accuracy file.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = accuracy_schema()
    tables = []
    for path in sorted((Path(results_root) / "accuracy").glob("part-*.parquet")):
        try:
            table = pq.ParquetFile(path).read()
        except (pa.ArrowException, OSError) as error:
            # One damaged file must not hide every other conversion (as in the results store).
            log.warning("skipping accuracy file %s: not a readable Parquet file (%s)", path, error)
            continue
        raw = (table.schema.metadata or {}).get(ACCURACY_VERSION_METADATA_KEY.encode())
        if raw is None or not raw.isdigit():
            log.warning("skipping %s: not a tflite-farm accuracy table (no schema version)", path)
            continue
        checked_version(path, "accuracy table", int(raw), ACCURACY_SCHEMA_VERSION)
        tables.append(table.cast(schema))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    frame: pd.DataFrame = table.sort_by([("converted_at", "ascending"), ("model_name", "ascending")]).to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get
    )
    return frame
