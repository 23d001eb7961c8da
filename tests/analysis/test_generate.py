"""A vision-language model with the SAE in its vision tower (docs/originals.md §4.6-4.8): bit-for-bit
passthrough with an exact SAE, edits that reach the text, keyword DCR and VQA metrics checked by
hand, the original files, and the LLM judge's parsing and plumbing on a tiny random LM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.analysis.planted import classifier_store, identity_sae, signed_identity_sae
from tests.analysis.tiny_models import tiny_causal_lm, vlm_store
from vista.analysis.context import AnalysisSettings, Context
from vista.analysis.registry import ANALYSES
from vista.analysis.runner import run_analyses
from vista.analysis.sdf import SDFConfig
from vista.errors import VistaError
from vista.interventions import judge, text
from vista.interventions.generate import MODES

pytest.importorskip("transformers")
S = AnalysisSettings(n_boot=100, n_perm=100, split="training", test_size=0.25)
ALL_MODES = list(MODES)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vlm_store(tmp_path_factory.mktemp("vlm"))


def _generate(store: Path, out: Path, **cfg: object) -> object:
    ctx = Context(signed_identity_sae(32), store, S)
    config = ANALYSES["generate"].config(
        k=2, sp_k=8, max_new_tokens=8, sdf=SDFConfig(k1=8, k2=4, k3=2), **cfg
    )
    return run_analyses(ctx, ["generate"], {"generate": config}, out)


def test_captions_exact_passthrough_is_bit_identical_and_edits_reach_the_text(
    store: Path, tmp_path: Path
) -> None:
    out = _generate(store, tmp_path, modes=ALL_MODES)
    r = out.results["generate"]  # type: ignore[attr-defined]
    assert r.metadata["target"] == "class" and r.metadata["vlm"] == "llava"
    assert r.metadata["n_images"] == 9 and r.metadata["layer"] == "encoder.layers.1"
    docs = {
        m: json.loads((tmp_path / f"causal_caption_class_{m}.json").read_text()) for m in ALL_MODES
    }
    texts = {
        m: [(s["original_text"], s["modified_text"]) for s in d["samples"]] for m, d in docs.items()
    }
    originals = [o for o, _ in texts["passthrough"]]
    assert any(originals) and all(m == o for o, m in texts["passthrough"])
    # The exact SAE has no reconstruction error: keeping the error changes nothing, and the
    # noise control (at the measured error scale, 0) is the clean model.
    assert texts["suppression_kept"] == texts["suppression"]
    assert all(m == o for o, m in texts["noise"]) and r.metadata["noise_std"] == 0.0
    changed = {m for m in ALL_MODES if any(o != t for o, t in texts[m])}
    assert {"suppression", "amplification", "leace", "sp_topk"} <= changed
    doc = docs["suppression"]
    assert doc["config"]["intervention_mode"] == "suppression"
    assert doc["config"]["n_target_features"] == len(r.metadata["features"]) == 6
    s0 = doc["samples"][0]
    assert set(s0) == {
        "index",
        "labels",
        "labels_readable",
        "task",
        "original_text",
        "modified_text",
    }
    assert s0["labels_readable"]["class"] in ("cat", "dog", "fox")
    # DCR recomputed by hand from the written captions.
    ev = json.loads((tmp_path / "eval_causal_caption_class_suppression.json").read_text())
    words = ["cat", "dog", "fox"]
    hand = [
        np.mean([any(w in t.split() for w in words) for t in col])
        for col in zip(*texts["suppression"])
    ]
    got = ev["evaluation"]["caption_metrics"]["class"]
    assert got["dcr_original"] == pytest.approx(hand[0]) and got["dcr_modified"] == pytest.approx(
        hand[1]
    )
    assert got["dcr_delta"] == pytest.approx(hand[1] - hand[0])
    assert r.value("passthrough/class/dcr_delta") == 0.0
    assert "bertscore" in r.skipped and "bert-score" in r.skipped["bertscore"]


def test_vqa_scores_answers_by_class_synonyms_and_the_causal_effect(
    store: Path, tmp_path: Path
) -> None:
    out = _generate(
        store,
        tmp_path,
        task="vqa",
        modes=["passthrough", "suppression"],
        control_questions=["what is the photo of"],
    )
    r = out.results["generate"]  # type: ignore[attr-defined]
    doc = json.loads((tmp_path / "causal_vqa_class_suppression.json").read_text())
    q = "What class is shown in this image?"
    assert set(doc["samples"][0]["questions"]) == {q, "what is the photo of"}
    ev = json.loads((tmp_path / "eval_causal_vqa_class_suppression.json").read_text())["evaluation"]
    per = ev["vqa_metrics"]
    ok = [
        [s["labels_readable"]["class"] in s["questions"][q][k].split() for s in doc["samples"]]
        for k in ("original", "modified")
    ]
    assert per[q]["acc_original"] == pytest.approx(np.mean(ok[0]))
    assert per[q]["acc_modified"] == pytest.approx(np.mean(ok[1]))
    ctl = [
        [len(s["questions"]["what is the photo of"][k].strip()) > 5 for s in doc["samples"]]
        for k in ("original", "modified")
    ]
    dq, dc = np.mean(ok[1]) - np.mean(ok[0]), np.mean(ctl[1]) - np.mean(ctl[0])
    assert ev["aggregate"]["causal_effect"] == pytest.approx(dq - dc)
    assert r.value("suppression/causal_effect") == pytest.approx(dq - dc)
    assert r.value("passthrough/causal_effect") == 0.0


def test_generate_skips_an_encoder_without_a_language_model(tmp_path: Path) -> None:
    ctx = Context(identity_sae(16), classifier_store(tmp_path), AnalysisSettings(n_boot=10))
    with pytest.raises(VistaError, match=r"encoder \(module\) has no language model"):
        run_analyses(ctx, ["generate"], {}, tmp_path / "o")
    bad = ANALYSES["generate"].needs(ANALYSES["generate"].config(modes=["erase"]))
    assert "unknown generate.modes ['erase']" in bad


def test_keywords_match_whole_words_and_vqa_synonyms_name_the_class() -> None:
    gender = text.keywords("gender", ["Male", "Female"])
    assert list(text.hits(["A woman smiles", "a human", "HE is here", "shelf"], gender)) == [
        True,
        False,
        True,
        False,
    ]
    male, female = text.synonyms("gender", ["Male", "Female"])
    y = np.array([0, 0, 1, 1])
    answers = ["a man", "female", "a woman", "the person"]
    # Whole words: "female" does not name the male class (the original matched substrings).
    assert list(text.correct(answers, y, [male, female])) == [True, False, True, False]
    age = text.synonyms("age", list(text.FAIRFACE_SYNONYMS["age"]))
    assert list(
        text.correct(["about 25 years", "in her twenties", "25"], np.array([3, 3, 4]), age)
    ) == [True, True, False]
    digits = text.synonyms("digit", [str(i) for i in range(10)])
    assert "seven" in digits[7] and "7" in digits[7]
    assert list(
        text.hits(["a seven", "7", "77"], text.keywords("digit", [str(i) for i in range(10)]))
    ) == [True, True, False]
    assert list(text.answered(["short", "  longer one "])) == [False, True]
    races = list(text.FAIRFACE_SYNONYMS["race"])
    assert text.question("race", races, {}) == text.QUESTIONS["race"]
    assert text.question("shape", ["round"], {"shape": "Which shape?"}) == "Which shape?"


def test_judge_answers_parse_after_thinking() -> None:
    assert judge.parse_yes_no("Yes.") == "yes" and judge.parse_yes_no("no") == "no"
    assert judge.parse_yes_no("<think>maybe yes, maybe no</think> No") == "no"
    assert judge.parse_yes_no("I would say yes") == "yes"
    assert judge.parse_yes_no("maybe yes, maybe no") is None and judge.parse_yes_no("") is None
    assert judge.parse_ab("B") == "B" and judge.parse_ab("<think>A or B?</think>A") == "A"
    assert judge.parse_ab("Tie.") == "tie" and judge.parse_ab("a caption") is None
    assert judge.parse_ab("Caption B is better") == "B"


def test_judge_runs_a_local_causal_lm_over_caption_files(store: Path, tmp_path: Path) -> None:
    _generate(store, tmp_path, modes=["suppression"])
    files = [str(tmp_path / "causal_caption_class_suppression.json")]
    lm = tiny_causal_lm(tmp_path)
    cfg = judge.JudgeConfig(model_path=str(lm), files=files, n_boot=50, n_perm=50, batch_size=4)
    r = judge.run_judge(cfg, str(tmp_path / "j"))
    (row,) = r.tables["binary"]
    assert row["condition"] == "class/suppression" and row["n"] == 9
    assert 0 <= row["unparsed"] <= 18 and 0.0 <= row["llm_dcr_original"] <= 1.0
    assert "class/suppression/class/llm_dcr_delta" in r.headline
    assert (tmp_path / "j/analyses/judge/result.json").is_file()
    cfg.mode = "pairwise"
    r = judge.run_judge(cfg, str(tmp_path / "p"))
    (row,) = r.tables["pairwise"]
    assert row["original"] + row["modified"] + row["tie"] + row["unparsed"] == row["n"] == 9
    cfg.files = [str(tmp_path / "eval_causal_caption_class_suppression.json")]
    with pytest.raises(VistaError, match="is not a caption file"):
        judge.run_judge(cfg, str(tmp_path / "x"))
    cfg.files, cfg.model_path = files, str(tmp_path / "nowhere")
    with pytest.raises(VistaError, match="is not a directory"):
        judge.run_judge(cfg, str(tmp_path / "x"))


def test_generate_and_judge_from_the_command_line(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import vista
    from tests.test_cli_errors import in_process
    from vista.saes.io import save_sae

    save_sae(signed_identity_sae(32), tmp_path / "sae")
    out = tmp_path / "g"
    r = vista(
        "generate",
        f"sae={tmp_path / 'sae'}",
        f"store={store}",
        f"out_dir={out}",
        "modes=passthrough,suppression",
        "target=class",
        "generate.max_new_tokens=6",
        "generate.k=2",
        "eval.split=training",
        "eval.n_boot=50",
        "eval.n_perm=50",
    )
    assert r.returncode == 0, r.stderr
    assert "generate: suppression/class/dcr_delta" in r.stdout
    caption = out / "causal_caption_class_suppression.json"
    assert caption.is_file() and (out / "analyses/generate/result.json").is_file()
    # The other verbs in process (the same code path without the start-up of a new process).
    lm = tiny_causal_lm(tmp_path)
    code, stdout, err = in_process(
        capsys,
        monkeypatch,
        "judge",
        f"model_path={lm}",
        f"files={caption}",
        f"out_dir={tmp_path / 'j'}",
        "mode=pairwise",
        "n_boot=50",
        "n_perm=50",
    )
    assert code == 0, err
    assert "pairwise_modified" in stdout
    code, _, err = in_process(
        capsys,
        monkeypatch,
        "judge",
        f"model_path={lm}",
        f"files={tmp_path / 'none.json'}",
        f"out_dir={tmp_path}",
    )
    assert code == 2 and "Traceback" not in err
    assert "none.json' does not exist; give the causal_caption_*.json files." in err
    code, _, err = in_process(
        capsys,
        monkeypatch,
        "generate",
        f"sae={tmp_path / 'sae'}",
        f"store={store}",
        f"out_dir={out}",
        "modes=erase",
    )
    assert code == 2 and "unknown generate.modes ['erase']" in err


def test_the_report_shows_what_the_vlm_says_on_the_label_page(store: Path, tmp_path: Path) -> None:
    from vista.reports.html import write_report
    from vista.saes.io import save_sae

    save_sae(signed_identity_sae(32), tmp_path / "sae")
    ctx = Context(signed_identity_sae(32), store, S, sae_path=str(tmp_path / "sae"))
    cfg = ANALYSES["generate"].config(
        modes=["passthrough", "suppression"], k=2, max_new_tokens=6, sdf=SDFConfig(k1=8, k2=4, k3=2)
    )
    run_analyses(ctx, ["exemplars", "generate"], {"generate": cfg}, tmp_path)
    page = (write_report(tmp_path).parent / "labels" / "0.html").read_text()
    assert "What the vision-language model says about it" in page
    assert "Generated text, clean and edited" in page and "<td>suppression</td>" in page
