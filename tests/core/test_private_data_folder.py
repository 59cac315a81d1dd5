"""Files of the data folder are the owner's alone; short secrets are refused (issue 11's
security review, finding 11)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.support import Platform, cli


def test_the_data_folder_and_secrets_are_private(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "data")
    del platform.env["SHENGTU_JWT_SECRET"]  # generated into the folder
    platform.start()
    try:
        platform.new_user()
        mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
        assert mode(platform.data_dir) == 0o700
        for name in ("jwt_secret", "shengtu.db"):
            assert mode(platform.data_dir / name) == 0o600, name
    finally:
        platform.stop()
    short = cli({**platform.env, "SHENGTU_JWT_SECRET": "too-short"}, "migrate", check=False)
    assert short.returncode != 0 and "至少需要 32 个字符" in short.stderr
