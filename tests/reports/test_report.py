"""The HTML report: written from result files only, every link and image resolves, data is text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.reports.runs import XSS, digits_run
from vista.errors import VistaError
from vista.reports.html import ReportConfig, write_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digits_run(tmp_path_factory.mktemp("digits") / "run", xss=True)


def _targets(page: Path, html: str, attr: str) -> list[Path]:
    refs = re.findall(rf'{attr}="([^"#]+)"', html)
    return [(page.parent / r).resolve() for r in refs if not r.startswith(("http:", "https:"))]


def test_every_page_link_and_image_resolves(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vista.saes.io
    import vista.store.reader

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the report opened a store or an SAE")

    monkeypatch.setattr(vista.store.reader.ActivationStore, "__init__", refuse)
    monkeypatch.setattr(vista.saes.io, "load_sae", refuse)
    index = write_report(run_dir, ReportConfig(max_features=20))
    pages = sorted(index.parent.rglob("*.html"))
    features = list((index.parent / "features").glob("*.html"))
    assert len(features) == 20 and len(list((index.parent / "labels").glob("*.html"))) == 2
    imgs = 0
    for page in pages:
        html = page.read_text()
        for target in _targets(page, html, "href") + _targets(page, html, "src"):
            assert target.is_file(), f"{page.name} links to a missing {target}"
        imgs += html.count("<img ")
    assert imgs > 20 * 12  # every feature page shows its top images
    top = (index.parent / "features" / f"{features[0].stem}.html").read_text()
    assert "Top-activating images" in top and "Nearest features" in top and "stability" in top


def test_class_names_are_text_never_markup(run_dir: Path) -> None:
    index = write_report(run_dir, ReportConfig(max_features=5))
    for page in index.parent.rglob("*.html"):
        html = page.read_text()
        assert XSS not in html, page
        assert (
            "<script>" not in html.replace("<script>\n(function", "") or page.name == "index.html"
        )
    label = (index.parent / "labels" / "1.html").read_text()
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in label and "odd &amp; &#39;quoted&#39;" in label
    )


def test_token_stores_get_patch_heatmaps(tmp_path: Path) -> None:
    run = digits_run(tmp_path / "tok", tokens=True)
    index = write_report(run, ReportConfig(max_features=4))
    maps = list((index.parent / "maps").glob("*.png"))
    assert maps and any(
        "heatmap on image" in p.read_text() for p in (index.parent / "features").glob("*.html")
    )


def test_a_directory_without_results_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(VistaError, match="holds no analysis results"):
        write_report(tmp_path)


def test_the_best_class_is_the_one_the_feature_fires_for() -> None:
    """Two classes share one sign-corrected AUC; the named one is where the latent fires more
    (issue 26's case: class means 0.0018 horizontal, 0.0189 vertical). For more classes, a best
    class the latent fires less on is marked "(against)"."""
    import numpy as np

    from vista.analysis.result import Result
    from vista.reports.features import FeatureData
    from vista.reports.pages import _best_text

    ex = Result("exemplars", metadata={"labels": ["stroke", "digit"],
                                       "stroke/class_names": ["horizontal", "vertical"],
                                       "digit/class_names": ["0", "1", "2"]})  # fmt: skip
    ex.arrays["stroke/class_mean"] = np.array([[0.0018, 0.0189], [0.5, 0.1]], dtype=np.float32)
    ex.arrays["digit/class_mean"] = np.array([[0.1, 0.9, 0.8], [0.2, 0.3, 0.4]], dtype=np.float32)
    auc = Result("feature_auc")
    auc.arrays["stroke/auc_test"] = np.array([[0.815, 0.815], [0.7, 0.7]], dtype=np.float32)
    auc.arrays["digit/auc_test"] = np.array([[0.95, 0.6, 0.55], [0.5, 0.52, 0.9]], dtype=np.float32)
    data = FeatureData({"exemplars": ex, "feature_auc": auc})
    cls, value, against = data.best_class("stroke")
    assert cls.tolist() == [1, 0] and against.tolist() == [False, False]
    assert _best_text(data.best_class("stroke"), 0, ["horizontal", "vertical"]) == (
        "0.815, fires for vertical"
    )
    cls, value, against = data.best_class("digit")
    assert cls.tolist() == [0, 2] and against.tolist() == [True, False]  # 0.1 < mean(0.9, 0.8)
    best, where = data.best_auc()
    assert where == ["digit=0 (against)", "digit=2"] and best.tolist() == pytest.approx([0.95, 0.9])


def test_a_feature_page_counts_and_captions_what_it_shows(run_dir: Path) -> None:
    """ "labels of the top images" counts the images the page shows (12), not the 16 stored; the
    captions name the label of the feature's best AUC; without stability there is no "stable
    only" box (it emptied the table)."""
    from vista.analysis.result import read_results
    from vista.reports.features import FeatureData, feature_order
    from vista.reports.pages import feature_context

    data = FeatureData(read_results(run_dir))
    cfg = ReportConfig(top_images=12)
    _, where = data.best_auc()
    for i in feature_order(data, 10).tolist():
        ctx = feature_context(data, i, set(), lambda index: None, cfg, [])
        assert len(ctx["top"]) == 12
        for entry in ctx["per_label"]:
            assert sum(c for _, c in entry["top_counts"]) == 12, entry["name"]
        about = where[i].split("=", 1)[0]
        assert all(t["label"].startswith(f"{about}=") for t in ctx["top"])
    index = write_report(run_dir, ReportConfig(max_features=5)).read_text()
    assert 'id="stable"' not in index and "stable only" not in index


def test_the_images_are_found_where_the_dataset_is_now(tmp_path: Path) -> None:
    """``report.dataset_root`` for a moved dataset; a relative root (older stores) beside the store."""
    from vista.analysis.result import Result
    from vista.reports.html import dataset_for_images

    (tmp_path / "run" / "imgs").mkdir(parents=True)
    ex = Result("exemplars", metadata={"dataset": {"name": "imagefolder", "root": "imgs"},
                                       "store": str(tmp_path / "run" / "s.h5")})  # fmt: skip
    results = {"exemplars": ex}
    assert dataset_for_images(results, ReportConfig())["root"] == str(tmp_path / "run" / "imgs")
    assert dataset_for_images(results, ReportConfig(dataset_root="/new"))["root"] == "/new"
    ex.metadata["dataset"] = {"name": "imagefolder", "root": "/abs/imgs"}
    assert dataset_for_images(results, ReportConfig())["root"] == "/abs/imgs"


def test_no_page_shows_a_path_of_the_machine_that_made_it(run_dir: Path) -> None:
    """A report is shared: the subtitle, footer and settings name the run's files relative to the
    run directory or by name, never by the absolute path where the report was built."""
    import json

    from vista.reports.html import shown_path

    record = run_dir / "run.json"  # as `vista run` writes it, with absolute paths in its settings
    settings = {"store": str(run_dir.resolve() / "store.h5"), "dataset": {"root": "/data/mnist"}}
    record.write_text(json.dumps({"config": settings}))
    try:
        index = write_report(run_dir, ReportConfig(max_features=5))
    finally:
        record.unlink()
    assert "store.h5" in index.read_text() and "/data/mnist" not in index.read_text()
    roots = {str(run_dir.resolve()), str(run_dir.resolve().parent)}
    for page in sorted(index.parent.rglob("*.html")):
        html = page.read_text()
        for root in roots:
            assert root not in html, f"{page.name} shows {root}"
    assert shown_path(run_dir / "store.h5", run_dir) == "store.h5"
    assert shown_path(run_dir / "sae" / "cfg.json", run_dir) == str(Path("sae") / "cfg.json")
    assert shown_path("/elsewhere/data/acts.h5", run_dir) == "acts.h5"
    assert shown_path("", run_dir) == ""


def test_a_label_page_says_which_analyses_left_it_out_and_why(
    run_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("report"))
    doc = json.loads((run / "analyses" / "ablation" / "result.json").read_text())
    label = doc["metadata"]["labels"][-1]
    doc["skipped"] = {label: "label 'x' has 1 class(es) with two or more images"}
    (run / "analyses" / "ablation" / "result.json").write_text(json.dumps(doc))
    index = write_report(run, ReportConfig(max_features=3))
    pages = [p.read_text() for p in (index.parent / "labels").glob("*.html")]
    page = next(p for p in pages if f"<h1>Label: {label}</h1>" in p)
    assert "Not measured for this label" in page
    assert "ablation: label &#39;x&#39; has 1 class(es)" in page
    others = [p for p in pages if p is not page]
    assert all("ablation: label &#39;x&#39;" not in p for p in others)


def test_the_overview_says_what_each_analysis_answers(run_dir: Path) -> None:
    """Two analyses that look alike (probes, probe) say how they differ: each listed analysis
    carries its registered one-line summary."""
    import html as html_lib

    from vista.analysis.registry import ANALYSES
    from vista.analysis.result import read_results

    page = html_lib.unescape(write_report(run_dir, ReportConfig(max_features=3)).read_text())
    for name in read_results(run_dir):
        assert ANALYSES.get_entry(name).summary in page, name
