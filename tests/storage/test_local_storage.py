"""Local storage writes a file whole or not at all, by either way it has (unnamed then
linked, or a temporary name then renamed), and leaves nothing else in the folder."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from shengtu.storage.local import LocalStorage

KEY = "results/2026/11/30/TASK-1-abc.png"


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-then-linked", "renamed"])
def test_a_put_writes_whole_files_and_leaves_nothing_else(tmp_path: Path, unnamed: bool) -> None:
    storage = LocalStorage(tmp_path / "files", "http://shengtu.test")
    if not unnamed:
        storage._unnamed = False
    folder = tmp_path / "files" / "results" / "2026" / "11" / "30"

    async def go() -> None:
        await storage.start()
        await storage.put(KEY, b"first", "image/png")
        assert await storage.get(KEY) == b"first"
        # A put replaces, as before.
        await storage.put(KEY, b"second, longer" * 1000, "image/png")
        assert await storage.get(KEY) == b"second, longer" * 1000
        assert os.listdir(folder) == ["TASK-1-abc.png"]
        assert oct((folder / "TASK-1-abc.png").stat().st_mode & 0o777) == "0o600"
        # A folder removed by hand is made again.
        shutil.rmtree(tmp_path / "files" / "results")
        await storage.put(KEY, b"third", "image/png")
        assert await storage.get(KEY) == b"third"
        assert os.listdir(folder) == ["TASK-1-abc.png"]
        with pytest.raises(ValueError):
            await storage.put("results/../../escape.png", b"x", "image/png")

    asyncio.run(go())
    assert storage._unnamed is (unnamed and hasattr(os, "O_TMPFILE"))
