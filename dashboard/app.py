"""tflite-farm dashboard: `harness dashboard [--results DIR]`, or
`streamlit run dashboard/app.py -- --results DIR`.

The entry point only wires things: the page list, then session.load() (the
dataset, the sidebar, and the message when there is nothing to show), then the
chosen page. Each page is one module under views/ (see views/__init__.py for why not pages/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    import dashboard  # noqa: F401  (installed, or run from the repository root)
except ImportError:
    # `streamlit run` puts this file's folder on sys.path, not its parent: make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard import session

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="tflite-farm", page_icon=":material/smartphone:", layout="wide")

# Material icons, not emoji: Streamlit ships their font, an emoji font may be missing.
navigation = st.navigation(
    [
        st.Page(
            VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", url_path="overview", default=True
        ),
        st.Page(VIEWS / "rankings.py", title="Rankings", icon=":material/leaderboard:", url_path="rankings"),
        st.Page(VIEWS / "pareto.py", title="Pareto", icon=":material/scatter_plot:", url_path="pareto"),
        st.Page(VIEWS / "device.py", title="Device", icon=":material/smartphone:", url_path="device"),
        st.Page(VIEWS / "sustained.py", title="Sustained", icon=":material/device_thermostat:", url_path="sustained"),
        st.Page(
            VIEWS / "compare_runs.py", title="Compare runs", icon=":material/compare_arrows:", url_path="compare-runs"
        ),
        st.Page(VIEWS / "policy.py", title="Policy", icon=":material/policy:", url_path="policy"),
    ]
)

if session.load() is not None:
    navigation.run()
