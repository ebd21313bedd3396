import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recinc_plugins.sparse import GrowingCSR, concat_ranges

entries = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 40), st.integers(1, 5)),
                   max_size=60)


@settings(max_examples=50, deadline=None)
@given(st.lists(entries, max_size=8), st.sampled_from(["sum", "last"]))
def test_matches_a_matrix_built_at_once(batches, combine):
    matrix = GrowingCSR(combine=combine)
    matrix._MIN_BUFFER = 16  # force merges between batches
    dense: dict = {}
    for batch in batches:
        if not batch:
            continue
        rows, cols, vals = map(np.array, zip(*batch, strict=True))
        matrix.add(rows, cols, vals.astype(float))
        for r, c, v in batch:
            dense[r, c] = dense.get((r, c), 0) + v if combine == "sum" else v
        probe = np.array([*sorted({r for r, _, _ in batch}), 99])
        pos, got = matrix.row_entries(probe)
        for j, r in enumerate(probe):
            assert set(got[pos == j].tolist()) == {c for (rr, c) in dense if rr == r}
    csr = matrix.tocsr()
    expected = sp.dok_matrix(matrix.shape)
    for (r, c), v in dense.items():
        expected[r, c] = v
    assert abs(csr - expected.tocsr()).sum() == 0


def test_repeated_rows_in_a_query_each_get_their_entries():
    matrix = GrowingCSR()
    matrix.add([2, 2, 5], [1, 3, 4])
    pos, cols = matrix.row_entries(np.array([2, 5, 2]))
    pairs = sorted(zip(pos.tolist(), cols.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 3), (1, 4), (2, 1), (2, 3)]


def test_concat_ranges_matches_the_loop():
    starts, lengths = np.array([4, 0, 9, 2]), np.array([2, 0, 3, 1])
    expected = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)])
    np.testing.assert_array_equal(concat_ranges(starts, lengths), expected)
