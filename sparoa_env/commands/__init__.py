"""Subcommands of the ``sparoa`` CLI: one module each, with ``register(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
from typing import Callable


def int_at_least(lo: int, what: str) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``lo``, else "expected <what>, got '<text>'"."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = int_at_least(1, "a positive integer")
seed_int = int_at_least(0, "a non-negative integer seed")
