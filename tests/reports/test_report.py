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
