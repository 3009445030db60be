"""Parameters as data: a component (algorithm, batch schedule, problem, data set) declares each of its own
parameters once (name, type, default, constraint, one-line help); one mechanism parses command-line text, checks
TOML and API values and says what is wrong in one message form, `NAME=VALUE: must be ...`."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InputError

#: Strict forms of a number in text: ASCII digits only (int() also takes other scripts' digits, full-width digits,
#: underscores and surrounding spaces); a float may also be nan or inf, judged by the constraint.
INT_TEXT = re.compile(r"[+-]?[0-9]+")
FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)",
                        re.IGNORECASE)
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
#: More digits than this cannot be a 64-bit count (and int() refuses 4300 or more).
MAX_DIGITS = 40
INT64_MAX = 2**63 - 1
#: The kinds of value a component's parameter may declare; a core setting may also be "strs" (a string or a list of
#: strings, kept as a tuple) or "period" (an integer or a word); "?" after a kind lets the value be None.
KINDS = {"int": int, "float": float, "str": str, "bool": bool}
ALL_KINDS = (*KINDS, "strs", "period")
#: The core settings' annotations (string form) that are not the name of their kind.
_ANNOTATED_KINDS = {"tuple[str, ...]": "strs", "int | str": "period"}


def key(name: object) -> str:
    """The one spelling of an option's name as a key: `--batch-size`, `batch-size` and `batch_size` are all
    `batch_size` (command line, TOML, API keywords and sweeps alike)."""
    return str(name).replace("-", "_")


def keyed(mapping: Any) -> dict[str, Any]:
    """`mapping` with every key spelt by `key`."""
    return {key(k): v for k, v in mapping.items()}


def short(text: str, limit: int = 60) -> str:
    """`text`, cut to `limit` characters with '...' (for messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def int_text(name: str, text: str) -> int:
    """An integer from strict ASCII text (INT_TEXT), refusing more digits than a 64-bit count can have."""
    if not INT_TEXT.fullmatch(text):
        raise InputError(name, short(text), "must be an integer")
    digits = text.lstrip("+-").lstrip("0") or "0"  # int() refuses 4300 digits, leading zeros included
    if len(digits) > MAX_DIGITS:
        raise InputError(name, short(text), f"must be an integer < 2^63 (it has {len(digits)} digits)")
    return -int(digits) if text.startswith("-") else int(digits)


def float_text(name: str, text: str) -> float:
    """A float from strict ASCII text (FLOAT_TEXT); -0.0 becomes 0.0."""
    if not FLOAT_TEXT.fullmatch(text):
        raise InputError(name, short(text), "must be a number")
    return float(text) + 0.0


def bool_text(name: str, text: str) -> bool:
    """true/false, yes/no, on/off, 1/0."""
    word = text.strip().lower()
    if word not in BOOL_WORDS:
        raise InputError(name, text, "must be true or false")
    return BOOL_WORDS[word]


def _period_text(name: str, text: str) -> int | str:
    """A local-SGD period from text: an integer (ASCII digits, `int_text`), else a word, stripped and lower-case."""
    return int_text(name, text) if INT_TEXT.fullmatch(text) else text.strip().lower()


#: The kinds whose command-line text is parsed strictly (any other kind takes the text as it is).
_TEXT_PARSERS: dict[str, Callable[[str, str], Any]] = {"int": int_text, "float": float_text, "bool": bool_text,
                                                       "period": _period_text}


def typed(name: str, value: Any, kind: str, *, from_text: bool = False) -> Any:
    """`value` as a `kind` (KINDS), else InputError `NAME=VALUE: must be ...`; `from_text`: a str is command-line text."""
    if value is None:
        if kind.endswith("?"):
            return None
        raise InputError(name, value, "must be given")
    kind = kind.removesuffix("?")
    if kind not in ALL_KINDS:
        raise ValueError(f"{name}: unknown kind {kind!r}")
    if from_text and isinstance(value, str):
        parse = _TEXT_PARSERS.get(kind)
        return parse(name, value) if parse is not None else value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise InputError(name, value, "must be true or false")
    if kind == "int":
        if isinstance(value, float) and value.is_integer():  # an integral float (TOML's 1e3) is that integer
            if abs(value) > INT64_MAX:
                raise InputError(name, value, "must be an integer < 2^63")
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(name, value, "must be an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(name, value, "must be a number")
        try:
            return float(value) + 0.0  # -0.0 becomes 0.0
        except OverflowError:  # an integer beyond the largest float
            raise InputError(name, value, "must be a finite number") from None
    if kind == "period":
        return _period(name, value)
    if kind == "strs":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
            raise InputError(name, value, "must be a string or a list of strings")
        return tuple(items)
    if not isinstance(value, str):
        raise InputError(name, value, "must be a string")
    return value


def _period(name: str, value: Any) -> int | str:
    """A local-SGD period from a value: an integer, an integral float, or a text (stripped first)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= INT64_MAX:
        return int(value)
    if isinstance(value, str):
        return _period_text(name, value.strip())
    raise InputError(name, value, "must be an integer >= 1, 'stich' or 'prsgd'")


def field_kind(annotation: object) -> str:
    """The kind (see KINDS) of a core setting from its annotation's string form: `int | None` is "int?"."""
    text = str(annotation)
    base = text.removesuffix(" | None")
    kind = _ANNOTATED_KINDS.get(base, base)
    if kind not in ALL_KINDS:
        raise ValueError(f"no kind of value for the annotation {text!r}")
    return kind + ("?" if base != text else "")


@dataclass(frozen=True)
class Param:
    """One parameter of a component: `kind` is "int", "float", "str" or "bool"; an int or float may be bounded
    (`low`/`high`, exclusive where `low_open`/`high_open`), a str may be one of `choices`."""

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("_"):
            raise ValueError(f"parameter name {self.name!r}: must be a Python identifier (use '_', shown as '-')")
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not self.help.strip():
            raise ValueError(f"parameter {self.name}: needs a one-line help text")
        self.value(self.default)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """The constraint: finite and within the bounds for numbers, one of the choices for strings."""
        if self.kind in ("int", "float"):
            if self.kind == "float" and not math.isfinite(value):
                raise InputError(self.name, value, f"must be a finite number{self._range()}")
            if self.kind == "int" and abs(value) > INT64_MAX:
                raise InputError(self.name, value, "must be an integer < 2^63")
            bad_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            bad_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if bad_low or bad_high:
                what = "an integer" if self.kind == "int" else "a number"
                raise InputError(self.name, value, f"must be {what}{self._range()}")
        elif self.choices is not None and value not in self.choices:
            raise InputError(self.name, value, "must be one of " + ", ".join(self.choices))

    def value(self, raw: Any, from_text: bool = False) -> Any:
        """`typed` (a str is command-line text where `from_text`), then checked; a str value must have no NUL."""
        v = typed(self.name, raw, self.kind, from_text=from_text)
        if not from_text and isinstance(v, str) and "\0" in v:
            raise InputError(self.name, v, "must not contain a NUL character")
        self.check(v)
        return v

    def _range(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " " + " and ".join(parts) if parts else ""

    def describe(self) -> str:
        """'float > 1 (default 2.0)': the type, constraint and default, for --help."""
        kind = "one of " + ", ".join(self.choices) if self.choices else self.kind
        return f"{kind}{self._range()} (default {self.default!r})"


def params_of(component: Any) -> tuple[Param, ...]:
    """The parameters a registered component declares (its `params` attribute; none if it has no such attribute)."""
    declared = getattr(component, "params", ())
    if not isinstance(declared, (tuple, list)) or not all(isinstance(p, Param) for p in declared):
        raise ValueError(f"{component!r}: `params` must be a tuple of crpsgd_mpi.params.Param")
    names = [p.name for p in declared]
    if len(set(names)) != len(names):
        raise ValueError(f"{component!r}: a parameter is declared twice in {names}")
    return tuple(declared)
