"""The Grafana dashboard is generated from code: the checked-in JSON is a fresh render.

deploy/grafana/dashboard.py builds it with grafana-foundation-sdk; `make dashboard`
rewrites deploy/grafana/naive-dashboard.json. What the dashboard shows (rows, queries,
metric names) is checked in tests/test_alerts.py, next to the rules.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "deploy" / "grafana" / "dashboard.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "naive-dashboard.json"


def generator() -> Any:
    """deploy/grafana/dashboard.py, a script rather than a package module."""
    spec = importlib.util.spec_from_file_location("naive_dashboard", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_dashboard_is_a_fresh_render() -> None:
    assert DASHBOARD.read_text() == generator().render(), (
        "deploy/grafana/naive-dashboard.json is out of date: run `make dashboard`"
    )


def test_panels_are_laid_out_in_rows_without_gaps_and_with_unique_ids() -> None:
    panels = json.loads(generator().render())["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    bottom = 0
    for panel in panels:
        grid = panel["gridPos"]
        if panel["type"] == "row":
            # Each row starts right below everything before it.
            assert (grid["x"], grid["y"], grid["w"]) == (0, bottom, 24), panel["title"]
        bottom = max(bottom, grid["y"] + grid["h"])


def test_every_query_reads_the_datasource_variable_in_code_mode() -> None:
    for panel in json.loads(generator().render())["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target["editorMode"] == "code" and target["range"] is True
