"""The spec's code blocks, read from ../shared/spec/suchuang-image-api.zh.md."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "spec" / "suchuang-image-api.zh.md"
SPEC_BASE_URL = "http://localhost:8081"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_HEADING = re.compile(r"^#+ (.+)$", re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    heading: str  # the nearest heading above it

    def for_server(self, base_url: str) -> str:
        """The block as written, pointed at ``base_url`` instead of localhost:8081."""
        return self.code.replace(SPEC_BASE_URL, base_url)


def blocks() -> list[Block]:
    text = SPEC_PATH.read_text(encoding="utf-8")
    found = []
    for m in _BLOCK.finditer(text):
        headings = _HEADING.findall(text, 0, m.start())
        found.append(Block(m.group(1), m.group(2), headings[-1] if headings else ""))
    return found


def json_examples() -> list[dict[str, object]]:
    return [json.loads(b.code) for b in blocks() if b.lang == "json"]
