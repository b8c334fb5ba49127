"""Did-you-mean: the known name closest to one a user got almost right.

The one place dbluigi guesses what a misspelt key, kind, type, model, table or column
was meant to be (difflib's similarity ratio); callers word the rest of the hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


def close_matches(
    word: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6
) -> list[str]:
    """Up to ``n`` choices at least ``cutoff`` alike to ``word``, the closest first."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)


def did_you_mean(
    word: str, choices: Iterable[str], *, quote: Callable[[str], str] = repr
) -> str | None:
    """``did you mean 'x'?`` for the closest choice (written by ``quote``), or None."""
    close = close_matches(word, choices)
    return f"did you mean {quote(close[0])}?" if close else None
