"""One exact comparison of two SimResults for the hwmodels tests (cache vs no cache, grouped vs not)."""
import dataclasses

import numpy as np
import pandas as pd

#: the SimResult tables built on first read (hwmodels.result.ResultTables)
TABLES = ("samples", "populations", "cores", "links", "action_counts")


def assert_same(a, b, tables: bool = True) -> None:
    """Every field of two SimResults equal exactly (DataFrames value for value), and, when `tables`, every lazily
    built table too."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
        else:
            assert x == y, f.name
    for name in TABLES if tables else ():
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
