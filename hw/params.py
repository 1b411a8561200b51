"""Checks of the integer parameters of hardware components.

A component parameter that is a count or a width must be an ``int``; ``bool`` is an
``int`` subclass in Python but is refused, so ``lanes=True`` is an error, not one lane.
"""

from __future__ import annotations

__all__ = ["is_int", "check_int", "check_positive"]


def is_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, what: str, expected: str = "a positive integer") -> int:
    """``value``, if it is an ``int`` and not a ``bool``.

    Parameters
    ----------
    value : object
        The parameter as given.
    what : str
        Its name in the message, e.g. ``"Lane count"``.
    expected : str
        What it must be, in the message.

    Raises
    ------
    TypeError
        ``"<what> must be <expected>, not <value!r>"``.
    """
    if not is_int(value):
        raise TypeError(f"{what} must be {expected}, not {value!r}")
    return value


def check_positive(value: object, what: str) -> int:
    """``value``, if it is an ``int`` (not a ``bool``) of at least 1.

    Raises :class:`TypeError` (not an ``int``) or :class:`ValueError` (below 1), both
    with the message ``"<what> must be a positive integer, not <value!r>"``.
    """
    check_int(value, what)
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value
