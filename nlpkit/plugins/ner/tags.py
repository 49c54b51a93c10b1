"""Tag schemes of named-entity data: IOB1, IOB2 (BIO) and BIOES, read, checked and brought to IOB2.

The model always learns IOB2 tags (``B-TYPE`` opens an entity, ``I-TYPE`` continues it, ``O`` is outside), the
scheme ``transformers.pipeline("token-classification", aggregation_strategy="simple")`` groups and seqeval's strict
mode scores. Data in the other schemes is converted losslessly:

* IOB1 (the original CoNLL-2003 files): ``I-TYPE`` opens an entity too; ``B-TYPE`` only separates two adjacent
  entities of the same type;
* BIOES: ``S-TYPE`` is a one-token entity, ``E-TYPE`` the last token of a longer one (``L-``/``U-``, the BILOU
  spelling, are read as ``E-``/``S-``).

An IOB2 sequence in which ``I-TYPE`` follows ``O`` or an entity of another type is invalid: with
``invalid="repair"`` the tag becomes ``B-TYPE`` (what seqeval's default mode and conlleval assume) and is counted
for the report; with ``invalid="error"`` it is a :class:`~nlpkit.errors.DataError` naming the row and token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nlpkit.errors import DataError

__all__ = ["SCHEMES", "TagCheck", "entities", "guess_scheme", "split_tag", "to_iob2"]

SCHEMES = ("auto", "IOB1", "IOB2", "BIOES")
_TAG = re.compile(r"^(?:O|[BIESLU][-_].+)$")
_PREFIX_ALIASES = {"L": "E", "U": "S"}


def split_tag(tag: str) -> tuple[str, str | None]:
    """``("B", "PER")`` for ``B-PER``; ``("O", None)`` for ``O``. ``L-``/``U-`` read as ``E-``/``S-``; ``B_PER``
    as ``B-PER``. Anything else raises ``ValueError``."""
    if tag == "O":
        return "O", None
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise ValueError(tag)
    prefix = _PREFIX_ALIASES.get(tag[0], tag[0])
    return prefix, tag[2:]


def guess_scheme(sequences: Sequence[Sequence[str]]) -> str:
    """``BIOES`` when any tag starts with ``S-``/``E-`` (or ``U-``/``L-``), else ``IOB2``. IOB1 cannot be told from
    an IOB2 sequence with mistakes: name it (``data.scheme=IOB1``)."""
    for tags in sequences:
        for tag in tags:
            if tag[:1] in ("S", "E", "U", "L") and tag[1:2] in ("-", "_"):
                return "BIOES"
    return "IOB2"


@dataclass
class TagCheck:
    """What :func:`to_iob2` found in a split: tags repaired (I- opening an entity in IOB2/BIOES data), per type."""

    repaired: dict[str, int] = field(default_factory=dict)
    rows_repaired: int = 0

    @property
    def total(self) -> int:
        return sum(self.repaired.values())


def to_iob2(tags: Sequence[str], scheme: str, *, invalid: str = "repair", check: TagCheck | None = None,
            where: Callable[[int], str] | None = None) -> list[str]:
    """``tags`` (in ``scheme``: IOB1, IOB2 or BIOES) as IOB2.

    An entity that opens with ``I-``/``E-`` where the scheme needs ``B-``/``S-`` is repaired (``invalid="repair"``,
    counted in ``check``) or refused (``invalid="error"``: a :class:`DataError` whose text starts with
    ``where(token index)``). A tag that is none of the scheme's is always an error.
    """
    out: list[str] = []
    prev_type: str | None = None  # the type of the entity the previous token belongs to (None: outside)
    prev_prefix = "O"
    fixed = 0
    for i, tag in enumerate(tags):
        try:
            prefix, kind = split_tag(tag)
        except ValueError:
            place = where(i) if where else f"token {i}"
            raise DataError(f"{place}: tag {tag!r} is not O, B-TYPE, I-TYPE (or E-/S- in BIOES). Fix the tag, or "
                            f"name the tag column (data.label_column).") from None
        if prefix == "O":
            out.append("O")
            prev_type, prev_prefix = None, "O"
            continue
        if scheme == "IOB1":
            if prefix in ("E", "S"):
                raise DataError(f"{where(i) if where else f'token {i}'}: tag {tag!r} is BIOES, not IOB1; set "
                                f"data.scheme=BIOES (or auto).")
            # B- only separates two adjacent entities of one type; I- opens an entity otherwise
            opens = prefix == "B" or kind != prev_type
            out.append(("B-" if opens else "I-") + kind)
            prev_type, prev_prefix = kind, prefix
            continue
        if scheme == "IOB2" and prefix in ("E", "S"):
            raise DataError(f"{where(i) if where else f'token {i}'}: tag {tag!r} is BIOES but data.scheme=IOB2; set "
                            f"data.scheme=BIOES (or auto).")
        # IOB2 / BIOES: B-/S- open an entity; I-/E- continue one of the same type (E-/S- close it)
        continues = prefix in ("I", "E") and kind == prev_type and prev_prefix in ("B", "I")
        if prefix in ("I", "E") and not continues:
            if invalid == "error":
                before = "O" if prev_type is None else (tags[i - 1] if i else "the sentence start")
                raise DataError(f"{where(i) if where else f'token {i}'}: tag {tag!r} opens an entity (after "
                                f"{before!r}), which {scheme} does not allow. Fix the tag, set data.scheme=IOB1 if "
                                f"the data is IOB1, or data.invalid_tags=repair to read it as B-{kind}.")
            fixed += 1
            if check is not None:
                check.repaired[kind] = check.repaired.get(kind, 0) + 1
            out.append("B-" + kind)
        else:
            out.append(("B-" if prefix in ("B", "S") else "I-") + kind)
        prev_type, prev_prefix = kind, prefix
        if prefix in ("E", "S"):  # the entity is closed: a following I- would open a new one
            prev_type, prev_prefix = None, "O"
    if fixed and check is not None:
        check.rows_repaired += 1
    return out


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(type, first, last + 1)`` of every entity of an IOB2 sequence (an I- after O or another type opens one,
    as seqeval's default mode reads it)."""
    found: list[tuple[str, int, int]] = []
    start, kind = -1, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, k = ("O", None) if tag == "O" else (tag[0], tag[2:])
        if kind is not None and (prefix != "I" or k != kind):
            found.append((kind, start, i))
            kind = None
        if prefix in ("B", "I") and kind is None:
            start, kind = i, k
    return found
