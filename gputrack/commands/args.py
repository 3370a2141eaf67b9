"""Argument types shared by the verbs: a bad value is caught by argparse, so it is one line
naming the option, with exit code 2, before any work starts."""

from __future__ import annotations

import argparse

from gputrack.errors import GputrackError
from gputrack.sensor.frame import BIT_DEPTHS, check_pattern


def bayer_pattern(text: str) -> str:
    try:
        return check_pattern(text)
    except GputrackError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def bit_depth(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value not in BIT_DEPTHS:
        raise argparse.ArgumentTypeError(
            f"bit depth '{text}' not supported (choose from {', '.join(map(str, BIT_DEPTHS))})"
        )
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number in [0, 1]")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number >= 0")
    return value


def size_wxh(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size WxH, e.g. 1920x1080")
    return w, h


def white_balance(text: str) -> str | tuple[float, float, float]:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        gains = tuple(float(v) for v in text.split(","))
    except ValueError:
        gains = ()
    if len(gains) != 3 or min(gains) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}': give 'auto' or three positive gains R,G,B")
    return gains  # type: ignore[return-value]
