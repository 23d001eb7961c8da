"""The batched type-II factorial ANOVA against statsmodels' anova_lm(typ=2), one model per column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vista.metrics.anova import factorial_anova

statsmodels = pytest.importorskip("statsmodels.formula.api")
anova_lm = pytest.importorskip("statsmodels.stats.anova").anova_lm


@pytest.mark.parametrize("n_factors", [2, 3])
def test_every_term_equals_statsmodels_on_unbalanced_data(n_factors: int) -> None:
    rng = np.random.default_rng(n_factors)
    n = 700
    f = {
        "age": rng.integers(0, 3, n),
        "gender": rng.integers(0, 2, n),
        "race": rng.integers(0, 4, n),
    }
    f = dict(list(f.items())[:n_factors])
    y = rng.normal(size=(n, 4))
    y[:, 1] += 2.0 * (f["age"] == 1) * (f["gender"] == 1)  # an interaction
    y[:, 2] += f["age"]  # a main effect
    terms, rss, df_resid = factorial_anova(y, f)
    formula = "y ~ " + "*".join(f"C({k})" for k in f)
    for j in range(y.shape[1]):
        ref = anova_lm(statsmodels.ols(formula, pd.DataFrame({"y": y[:, j], **f})).fit(), typ=2)
        assert [t.name for t in terms] == [
            i.replace("C(", "").replace(")", "") for i in ref.index[:-1]
        ]
        np.testing.assert_allclose([t.ss[j] for t in terms], ref["sum_sq"].values[:-1], rtol=1e-8)
        np.testing.assert_allclose(
            [t.p[j] for t in terms], ref["PR(>F)"].values[:-1], rtol=1e-6, atol=1e-300
        )
        assert [t.df for t in terms] == list(ref["df"].values[:-1])
        assert (
            rss[j] == pytest.approx(ref["sum_sq"].values[-1]) and df_resid == ref["df"].values[-1]
        )
    inter = next(t for t in terms if t.name == "age:gender")
    assert inter.p[1] < 1e-10 and inter.partial_eta_sq[1] == pytest.approx(
        inter.ss[1] / (inter.ss[1] + rss[1])
    )


def test_a_thousand_features_share_one_design() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    f = {"a": rng.integers(0, 9, n), "b": rng.integers(0, 2, n), "c": rng.integers(0, 7, n)}
    terms, _, _ = factorial_anova(rng.normal(size=(n, 1000)), f)
    assert len(terms) == 7 and terms[-1].name == "a:b:c" and terms[-1].p.shape == (1000,)
    # Under the null the p-values are uniform.
    assert 0.4 < float(np.mean(terms[0].p)) < 0.6
