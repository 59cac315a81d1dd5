"""What labelling costs per stored picture (issue 25): a 1024 × 1024 PNG and JPEG, CPU per
picture of the result check as it was (sniffed whole), with the implicit label (spliced
into the file: the check's decode plus a copy), and with the visible label as well (drawn
and encoded again). The implicit label must stay a metadata insertion: a small share of
the check it rides on."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from shengtu.safety.labels import Label, labelled
from shengtu.safety.visible import Visible
from shengtu.storage.images import checked

PIXELS = 4096 * 4096
TASK_NO = "TASK-20250901120000123-0042"
# The implicit label may add at most this share to the check's own CPU per picture.
IMPLICIT_SHARE = 0.25


def photo(size: int = 1024) -> Image.Image:
    """A picture that compresses like a generated one (noise over gradients), not like a
    flat test card."""
    noise = Image.effect_noise((size, size), 48)
    gradient = Image.linear_gradient("L").resize((size, size))
    return Image.merge("RGB", (noise, gradient, gradient.rotate(90)))


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def cpu_per_call(check: Callable[[bytes], Any], data: bytes, rounds: int) -> float:
    check(data)  # fonts and tables warm
    started = time.process_time()
    for _ in range(rounds):
        check(data)
    return (time.process_time() - started) / rounds * 1000


def label_benchmark(report: Any, rounds: int = 20) -> None:
    img = photo()
    for fmt in ("PNG", "JPEG"):
        data = encoded(img, fmt)
        plain = cpu_per_call(checked(PIXELS), data, rounds)
        implicit = cpu_per_call(labelled(PIXELS, Label("Shengtu", TASK_NO)), data, rounds)
        shown = Label("Shengtu", TASK_NO, Visible())
        visible = cpu_per_call(labelled(PIXELS, shown), data, rounds)
        added = implicit - plain
        report.row(
            f"labels: 1024 × 1024 {fmt} ({len(data) // 1024} KB), CPU per picture",
            f"check {plain:.1f} ms · + implicit {added:.2f} ms"
            f" · + visible {visible - plain:.1f} ms",
            f"implicit ≤ {IMPLICIT_SHARE:.0%} of the check",
            added <= IMPLICIT_SHARE * plain,
        )


if __name__ == "__main__":

    class Print:
        def row(self, name: str, value: str, target: str = "", met: bool | None = None) -> None:
            print(f"{name}: {value} ({target}: {'met' if met else 'MISSED'})")

    label_benchmark(Print())
