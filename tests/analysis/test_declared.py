"""Each analysis declares what its results hold; readers read only through the declarations."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

from vista.analysis.declared import COMMON, Key, Outputs, config_of
from vista.analysis.registry import ANALYSES
from vista.analysis.result import Result

SRC = Path(__file__).resolve().parents[2] / "src" / "vista"
READERS = [*sorted((SRC / "reports").glob("*.py")), *sorted((SRC / "benchmark").glob("*.py"))]
READERS += [SRC / "pipeline.py", SRC / "cli.py"]
HOLDERS = {"scalars", "arrays", "tables", "metadata"}


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_every_analysis_declares_its_outputs(name: str) -> None:
    spec = ANALYSES[name]
    assert spec.outputs is not None and spec.outputs.analysis == name
    assert spec.outputs.keys, "an analysis that writes nothing"
    module = importlib.import_module(spec.run.__module__)
    for value in vars(module).values():  # every Key constant of the module is one it declares
        if isinstance(value, Key):
            assert value in spec.outputs.keys or value in COMMON.keys


def _named_key(node: ast.AST) -> bool:
    """A string constant or f-string: a result key spelled out."""
    return isinstance(node, (ast.JoinedStr,)) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def _spelled_reads(path: Path) -> list[str]:
    """Reads of a result by a spelled-out key or analysis name in ``path``."""
    out = []
    names = set(ANALYSES)
    for node in ast.walk(ast.parse(path.read_text())):
        target, key = None, None
        if isinstance(node, ast.Subscript):
            target, key = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get" and node.args:
                target, key = node.func.value, node.args[0]
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            target, key = node.comparators[0], node.left
        if target is None or key is None or not _named_key(key):
            continue
        holder = isinstance(target, ast.Attribute) and target.attr in HOLDERS
        by_name = isinstance(key, ast.Constant) and key.value in names
        if holder or by_name:
            out.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return out


def test_readers_name_no_result_key() -> None:
    spelled = [hit for path in READERS for hit in _spelled_reads(path)]
    assert spelled == []


def test_the_reader_check_finds_a_spelled_key(tmp_path: Path) -> None:
    f = tmp_path / "reader.py"
    f.write_text(
        "a = r.scalars['fvu']\nb = r.arrays.get(f'{x}/auc')\nc = results.get('health')\n"
        "d = 'probes' in results\ne = r.scalars[name]\nf = FVU.of(results)\n"
    )
    assert [h.split(" ", 1)[0] for h in _spelled_reads(f)] == [
        "reader.py:1",
        "reader.py:2",
        "reader.py:3",
        "reader.py:4",
    ]


def test_a_pattern_names_and_matches_its_keys() -> None:
    out = Outputs("x")
    key = out.scalar("{label}/k{k}/{probe}/targeted", "none")
    assert key.fields == ["label", "k", "probe"]
    assert key.name(label="digit", k=4, probe="fresh") == "digit/k4/fresh/targeted"
    assert key.matches("digit/k4/fresh/targeted")
    assert not key.matches("digit/k4/fresh/extra/targeted")  # a part holds no "/"
    assert not key.matches("digit/k4/fresh/targeted_x")
    with pytest.raises(KeyError):
        key.name(label="digit")
    r = Result("x")
    r.add("digit/k4/fresh/targeted", 0.5)
    r.add("parity/k4/fresh/targeted", 0.25)
    r.add("digit/k8/fresh/targeted", 0.125)
    assert key.of({"x": r}, label="digit", k=4, probe="fresh").value == 0.5
    assert key.of({}, label="digit", k=4, probe="fresh") is None
    assert sorted(key.matching({"x": r}, k=4)) == [
        "digit/k4/fresh/targeted",
        "parity/k4/fresh/targeted",
    ]
    assert sorted(p["label"] for p, _ in key.each({"x": r}, k=4)) == ["digit", "parity"]


def test_an_undeclared_key_or_direction_is_reported() -> None:
    out = Outputs("x")
    out.scalar("fvu", "lower")
    out.scalar("{label}/{part}", "none")
    out.scalar("{label}/selectivity", "higher")
    out.array("{label}/auc")
    r = Result("x")
    r.add("fvu", 0.1, "lower")
    r.add("digit/selectivity", 0.9, "higher")  # the more specific declaration wins
    r.add("digit/other", 0.3)
    r.arrays["digit/auc"] = np.zeros(2)
    assert out.undeclared(r) == []
    r.add("mse", 0.2, "lower")
    r.add("fvu", 0.1, "higher")
    r.tables["rows"] = []
    assert out.undeclared(r) == [
        "scalar 'fvu' has direction 'higher', declared 'lower'",
        "scalar 'mse'",
        "table 'rows'",
    ]
    with pytest.raises(ValueError, match="declared twice"):
        out.scalar("fvu", "lower")


def test_config_of_reads_the_recorded_settings_as_the_dataclass() -> None:
    from vista.analysis.exemplars import ExemplarsConfig

    r = Result("exemplars", config={"quantiles": [0.5], "unknown_old_setting": 1})
    cfg = config_of(r, ExemplarsConfig)
    assert cfg.quantiles == [0.5] and cfg.top_k == ExemplarsConfig().top_k


def test_a_score_without_an_interval_or_a_reason_breaks_the_contract() -> None:
    """Issue 29: every number with a direction carries an interval and its n, or says why not."""
    r = Result("x")
    r.add("fvu", 0.1, "lower", (0.09, 0.11), 100)
    r.add("count", 3.0, "none")  # a description: no interval needed
    r.add("dead", 0.2, "lower", n=10, no_interval="a count over the whole split")
    r.add("skipped", float("nan"), "higher")  # nothing to bound
    assert Outputs.unbounded(r) == []
    r.add("mse", 0.2, "lower", n=100)
    r.add("acc", 0.9, "higher", (0.8, 0.95))
    assert Outputs.unbounded(r) == [
        "scalar 'mse' has a direction but no interval and no reason",
        "scalar 'acc' has an interval but no n",
    ]
    doc = r.scalars["dead"].to_json()
    assert doc["no_interval"] == "a count over the whole split"
    assert type(r.scalars["dead"]).from_json(doc).no_interval == doc["no_interval"]
