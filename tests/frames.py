"""Whole-DataFrame equality where chispa cannot sort (map columns): rows as sorted dicts."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame


def as_rows(df: DataFrame) -> list[dict[str, Any]]:
    return sorted((r.asDict(recursive=True) for r in df.collect()), key=repr)


def assert_same_rows(actual: DataFrame, expected: DataFrame) -> None:
    """Same column names and types (nullability aside) and the same multiset of rows."""
    def shape(df: DataFrame) -> list[tuple[str, str]]:
        return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]

    assert shape(actual) == shape(expected)
    assert as_rows(actual) == as_rows(expected)
