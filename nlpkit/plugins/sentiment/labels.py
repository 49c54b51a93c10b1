"""The sentiment task's labels: single-label columns mapped to ids (names, ints or a ``ClassLabel``), and multi-label
targets (lists, delimited strings or one 0/1 column per label) as multi-hot rows, all in Arrow and numpy (no
Python pass over the rows). Errors name the file and row (:func:`nlpkit.data_files.origin_of`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict

from nlpkit.data_files import arrow_column, contiguous, first_index, origin_of
from nlpkit.errors import DataError

__all__ = ["holds_label_lists", "label_map", "map_labels", "multi_hot", "multi_label_names"]


# ------------------------------------------------------------------------------------------- labels


def _class_names(d: Dataset, column: str) -> list[str] | None:
    feature = d.features.get(column)
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def label_map(train: Dataset, column: str, labels: Sequence[str] | None = None,
              source: str = "the training data") -> list[str]:
    """The label names, in id order: given; else a ``ClassLabel`` column's own names; else sorted from the
    training split (ints in numeric order, as their str). ``source`` names the data in errors."""
    if labels:
        return [str(x) for x in labels]
    names = _class_names(train, column)
    if names:
        return names
    values = _label_values(train, column, source, "train")
    if values.null_count:
        row = first_index(pc.is_null(values).to_numpy(zero_copy_only=False))
        raise DataError(f"{origin_of(train, row, source, 'train')} has no label in column {column!r}: give every "
                        f"training row a label.")
    unique = pc.unique(values).to_pylist()
    if all(isinstance(v, int) for v in unique):
        return [str(v) for v in sorted(unique)]
    return sorted(str(v) for v in unique)


def _label_values(d: Dataset, column: str, source: str, split: str) -> pa.ChunkedArray:
    """A single-label column as Arrow, refused with the fix when its values are not one kind of label: numbers
    and text mixed in one column (``1`` and ``"negative"`` in a jsonl file, which datasets keeps as JSON values
    that no Arrow kernel compares), or lists and dicts."""
    col = arrow_column(d, column)
    kind = col.type
    if isinstance(kind, pa.BaseExtensionType) or pa.types.is_struct(kind) or pa.types.is_map(kind):
        values = col.to_pylist()
        if isinstance(kind, pa.BaseExtensionType):  # datasets' Json feature: each value as its JSON text
            values = [json.loads(v) if isinstance(v, str) else v for v in values]
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        first = next((i for i, v in enumerate(values) if type(v).__name__ != kinds[0]), 0) if kinds else 0
        raise DataError(f"{source} ({split} split): the label column {column!r} mixes values of different kinds "
                        f"({', '.join(kinds)}; e.g. {origin_of(d, first, source, split)} holds "
                        f"{values[first]!r}). Write every label in one form: all names (\"negative\") or all "
                        f"numbers.")
    return col


def _value_name(value: Any, class_names: list[str] | None) -> str:
    """A label value as a name: a ``ClassLabel`` id by its class name, anything else as its str."""
    if class_names and isinstance(value, int) and 0 <= value < len(class_names):
        return class_names[value]
    return str(value)


def map_labels(ds: DatasetDict, column: str, names: Sequence[str], source: str) -> DatasetDict:
    """Replace label values by their ids in a ``labels`` column; unknown labels (e.g. only in eval data) fail,
    naming the row. A ``ClassLabel`` column is read by its names (so a model's own label order wins)."""
    index = {n: i for i, n in enumerate(names)}
    for split, d in ds.items():
        own = _class_names(d, column)
        col = _label_values(d, column, source, split)
        values = pc.unique(col).to_pylist()  # one Python look-up per distinct value, not per row
        ids = [index.get(_value_name(v, own), -1) for v in values]
        if own == list(names) and -1 not in ids:  # the ids already are the model's: nothing to rewrite
            ds[split] = contiguous(d) if column == "labels" else contiguous(d).rename_column(column, "labels")
            continue
        if -1 in ids:
            bad = [v for v, i in zip(values, ids) if i < 0]
            where = pc.is_in(col, value_set=pa.array(bad, type=col.type)).to_numpy(zero_copy_only=False)
            row = first_index(where)
            hidden = " (-1 marks a hidden label: hub test splits often have none; set data.test_split to a " \
                     "labelled split)" if own and col[row].as_py() == -1 else ""
            raise DataError(
                f"{origin_of(d, row, source, split)}: label {col[row].as_py()!r} in column {column!r} is not one "
                f"of the known labels {list(names)}{hidden}. Fix the row, or list every label with labels=[...]."
            )
        where = pc.index_in(col, value_set=pa.array(values, type=col.type)).to_numpy(zero_copy_only=False)
        labels = np.asarray(ids, dtype=np.int64)[where]
        ds[split] = contiguous(d).remove_columns(column).add_column("labels", labels)  # no pass over the rows
    return ds


# ------------------------------------------------------------------------------------------- multi-label


def holds_label_lists(d: Dataset, column: str) -> bool:
    """Whether ``column`` holds lists (a multi-label column such as ``["sports", "politics"]``)."""
    kind = d.data.table.schema.field(column).type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _label_lists(d: Dataset, column: str, delimiter: str | None, source: str,
                 split: str) -> tuple[pa.Array, np.ndarray, int]:
    """Every (label name, row) pair of a multi-label column, in Arrow: ``(names, rows, n_rows)``.

    The column holds lists (of names, or of ``ClassLabel`` ids: read by their names), or strings of names joined
    by ``delimiter`` (blanks around names are trimmed). An empty list or string, or an empty cell, is a text
    with no label.
    """
    col = arrow_column(d, column).combine_chunks()
    if delimiter is not None and not holds_label_lists(d, column):
        if pa.types.is_integer(col.type) or pa.types.is_null(col.type):  # a csv column of single numeric labels
            col = pc.cast(col, pa.string())
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise DataError(f"{source} ({split} split): data.label_delimiter={delimiter!r} needs a text label "
                            f"column, but {column!r} holds {col.type} values.")
        col = pc.split_pattern(col, delimiter)
    elif not holds_label_lists(d, column):
        raise DataError(f"{source} ({split} split): multi-label needs the label column {column!r} to hold lists "
                        f"(it holds {col.type}); for labels joined in a string set data.label_delimiter, for one "
                        f"0/1 column per label set data.label_columns=[...].")
    rows = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(col)
    feature = d.features.get(column)
    class_names = getattr(getattr(feature, "feature", None), "names", None)  # List(ClassLabel(...))
    if class_names and pa.types.is_integer(values.type):
        values = pa.array(class_names, pa.string()).take(values)
    else:
        values = pc.cast(values, pa.string())
    values = pc.utf8_trim_whitespace(values)
    keep = pc.and_(pc.is_valid(values), pc.greater(pc.utf8_length(values), 0))
    if not pc.all(keep).as_py():
        mask = keep.to_numpy(zero_copy_only=False)
        values, rows = values.filter(keep), rows[mask]
    return values, rows, len(d)


def multi_label_names(train: Dataset, *, column: str | None = None, columns: Sequence[str] | None = None,
                      delimiter: str | None = None, labels: Sequence[str] | None = None) -> list[str]:
    """The label names of a multi-label training split, in id order: ``labels`` when given; else the 0/1
    ``columns``' names; else the sorted names found in ``column`` (lists, or strings joined by ``delimiter``)."""
    if labels:
        return [str(x) for x in labels]
    if columns:
        return [str(c) for c in columns]
    feature = train.features.get(column)
    class_names = getattr(getattr(feature, "feature", None), "names", None)
    if class_names:
        return list(class_names)
    values, _, _ = _label_lists(train, column, delimiter, "the training data", "train")
    return sorted(pc.unique(values).to_pylist())


def _hot_from_columns(d: Dataset, columns: Sequence[str], names: Sequence[str], source: str,
                      split: str) -> np.ndarray:
    """A (rows, labels) 0/1 matrix from one 0/1 column per label (columns named as the labels)."""
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise DataError(f"{source} ({split} split): label column(s) {unknown} are not among the model's labels "
                        f"{list(names)}.")
    hot = np.zeros((len(d), len(names)), dtype=np.int8)
    for j, name in enumerate(names):
        if name not in columns:
            raise DataError(f"{source} ({split} split) has no 0/1 column for the label {name!r}; data.label_columns "
                            f"is {list(columns)}.")
        col = arrow_column(d, name)
        if col.null_count:
            row = first_index(pc.is_null(col).to_numpy(zero_copy_only=False))
            raise DataError(f"{origin_of(d, row, source, split)}: label column {name!r} is empty; expected 0 or 1.")
        if not (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"{source} ({split} split): label column {name!r} holds {col.type} values; expected 0 "
                            f"or 1 (one column per label).")
        values = col.to_numpy() if col.num_chunks else np.zeros(0)
        bad = (values != 0) & (values != 1)
        if bad.any():
            row = first_index(bad)
            raise DataError(f"{origin_of(d, row, source, split)}: label column {name!r} holds {values[row].item()!r}; "
                            f"expected 0 or 1.")
        hot[:, j] = values
    return hot


def multi_hot(ds: DatasetDict, names: Sequence[str], source: str, *, column: str | None = None,
              columns: Sequence[str] | None = None, delimiter: str | None = None) -> DatasetDict:
    """Replace multi-label targets by a ``labels`` column of multi-hot rows (``int8``, one slot per name, in id
    order), built with Arrow and numpy, never a Python pass over the rows.

    The labels come from ``column`` (lists of names, or strings joined by ``delimiter``) or from ``columns``
    (one 0/1 column per label, named as the labels; they are removed). A label that is not in ``names`` fails,
    naming the row.
    """
    index = pa.array(list(names), pa.string())
    for split, d in ds.items():
        if columns:
            hot = _hot_from_columns(d, columns, names, source, split)
            d = contiguous(d).remove_columns([c for c in columns if c in d.column_names])
        else:
            values, rows, n = _label_lists(d, column, delimiter, source, split)
            ids = pc.index_in(values, value_set=index)
            if ids.null_count:
                k = first_index(pc.is_null(ids).to_numpy(zero_copy_only=False))
                raise DataError(f"{origin_of(d, int(rows[k]), source, split)}: label {values[k].as_py()!r} in column "
                                f"{column!r} is not one of the known labels {list(names)}. Fix the row, or list "
                                f"every label with labels=[...].")
            hot = np.zeros((n, len(names)), dtype=np.int8)
            hot[rows, ids.to_numpy(zero_copy_only=False)] = 1
            d = contiguous(d).remove_columns(column)
        flat = pa.FixedSizeListArray.from_arrays(pa.array(hot.ravel(), pa.int8()), len(names))
        ds[split] = d.add_column("labels", flat)
    return ds
