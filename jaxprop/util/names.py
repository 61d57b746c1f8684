"""Suggestions for a misspelt name: ``unknown model 'tanh_softmax' (did you mean 'tanh-softmax'?)``.

>>> did_you_mean("tanh_softmax", ["two-layer-mse", "tanh-softmax"])
" (did you mean 'tanh-softmax'?)"
>>> did_you_mean("nope", ["two-layer-mse", "tanh-softmax"])
''
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(" ", "-")


def did_you_mean(name: object, names: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name``, or ``""`` when none is
    close (:func:`difflib.get_close_matches`; case, ``_`` and ``-`` are not told apart)."""
    if not isinstance(name, str):
        return ""
    names = list(names)
    by_normal = {_normal(n): n for n in names}
    close = difflib.get_close_matches(_normal(name), list(by_normal), n=1, cutoff=0.6)
    return f" (did you mean {by_normal[close[0]]!r}?)" if close else ""
