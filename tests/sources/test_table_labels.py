"""Table label columns: strings stay strings unless every value is a clean integer; sparse
integers are named classes, not thousands of empty ones; an empty cell names its row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vista.errors import VistaError
from vista.sources.datasets.files import column_labels


def _col(values: list) -> np.ndarray:
    return np.asarray(values, dtype=object)


def test_leading_zeros_are_distinct_classes() -> None:
    y, names = column_labels(_col(["01", "1", "001", "1"]), "code", "t.csv")
    assert names == ["001", "01", "1"] and list(y) == [1, 2, 0, 2]


def test_dense_integers_are_class_indices_and_sparse_ones_named_classes() -> None:
    y, names = column_labels(_col([str(d) for d in [3, 0, 9, 1, 2, 4, 5, 6, 7, 8]]), "digit", "t")
    assert names == [str(i) for i in range(10)] and list(y) == [3, 0, 9, 1, 2, 4, 5, 6, 7, 8]
    y, names = column_labels(_col(["90211", "10001", "90211"]), "zip", "t.csv")
    assert names == ["10001", "90211"] and list(y) == [1, 0, 1]
    y, names = column_labels(_col([2010, -3, 2010]), "year", "t.parquet")  # integer cells
    assert names == ["-3", "2010"] and list(y) == [1, 0, 1]


@pytest.mark.parametrize("empty", ["", "  ", None, float("nan")])
def test_an_empty_cell_is_an_error_naming_the_row(empty: object) -> None:
    with pytest.raises(VistaError, match=r"Label column 'age' of t.csv is empty in data row 3"):
        column_labels(_col(["a", "b", empty, "c"]), "age", "t.csv")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.from_regex(r"0*[0-9]{1,6}", fullmatch=True),
            st.text(min_size=1, max_size=5).filter(str.strip),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_every_distinct_value_is_one_class_and_names_round_trip(values: list[str]) -> None:
    y, names = column_labels(_col(values), "c", "t")
    for v, i in zip(values, y, strict=True):
        assert 0 <= i < len(names) and names[i] == v
