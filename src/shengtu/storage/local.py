"""Files in a folder under the data directory, served by the API at ``/files/<key>``."""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio

from shengtu.gates import Gate
from shengtu.storage.base import Check, Stored
from shengtu.storage.images import ImageInfo

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-./]{0,254}$")


def valid_key(key: str) -> bool:
    return bool(_KEY_RE.match(key)) and ".." not in key and "//" not in key


class LocalStorage:
    def __init__(self, root: Path, public_base_url: str) -> None:
        self.root = root.resolve()
        self.prefix = public_base_url.rstrip("/") + "/files/"
        # Folders written to, resolved and made once (a picture's folder is its day's):
        # resolving a whole path is a system call per component, ~10 a picture.
        self._folders: dict[str, Path] = {}
        # Files written unnamed, then linked (O_TMPFILE, Linux), until that fails once.
        self._unnamed = hasattr(os, "O_TMPFILE")
        self._proc_fds: tuple[int, int] | None = None

    def path(self, key: str) -> Path | None:
        if not valid_key(key):
            return None
        path = (self.root / key).resolve()
        return path if path.is_relative_to(self.root) else None

    def _folder(self, name: str) -> Path | None:
        """The folder ``name`` (a valid key's folder part), inside the root, made."""
        folder = self._folders.get(name)
        if folder is None:
            folder = (self.root / name).resolve()
            if not folder.is_relative_to(self.root):
                return None
            folder.mkdir(parents=True, exist_ok=True)
            if len(self._folders) >= 1024:
                self._folders.clear()
            self._folders[name] = folder
        return folder

    def _write(self, key: str, data: bytes) -> None:
        folder_name, _, name = key.rpartition("/")
        folder = self._folder(folder_name) if valid_key(key) else None
        if folder is None:
            raise ValueError(f"invalid storage key {key!r}")
        try:
            self._write_in(folder, folder / name, data)
        except FileNotFoundError:
            # The folder was removed since it was made (by hand: the sweep deletes files).
            folder.mkdir(parents=True, exist_ok=True)
            self._write_in(folder, folder / name, data)

    def _write_in(self, folder: Path, path: Path, data: bytes) -> None:
        # A reader never sees half a file, and a crash leaves none: the file is written
        # without a name and linked into place whole (one change to the folder, where a
        # temporary name and a rename are three); where the file system cannot, under a
        # temporary name, then renamed.
        if self._unnamed and self._write_unnamed(folder, path, data):
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _fds(self) -> int:
        """This process's /proc/self/fd, opened once per process (a fork has its own)."""
        pid = os.getpid()
        if self._proc_fds is None or self._proc_fds[0] != pid:
            self._proc_fds = (pid, os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY))
        return self._proc_fds[1]

    def _write_unnamed(self, folder: Path, path: Path, data: bytes) -> bool:
        """False when this file system (or this key, taken already) needs the other way."""
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self._unnamed = False
            return False
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # linkat(AT_SYMLINK_FOLLOW) through /proc: the way open(2) gives to name it.
            os.link(str(fd), path, src_dir_fd=self._fds(), follow_symlinks=True)
        except FileExistsError:
            return False  # replaced the other way, as a put replaces
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM):
                raise
            self._unnamed = False  # no /proc to link from
            return False
        finally:
            os.close(fd)
        return True

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def aclose(self) -> None:
        return None

    async def locate(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path is not None and path.is_file() else None

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await anyio.to_thread.run_sync(self._write, key, data)

    async def put_checked(
        self, data: bytes, check: Check, key_for: Callable[[ImageInfo], str], gate: Gate
    ) -> Stored:
        # Checked and written in one trip to a thread: each trip costs the loop more than
        # a small picture's check or write, and every thread holding the GIL slows it.
        def checked_and_written() -> Stored:
            stored, info = check(data)
            key = key_for(info)
            self._write(key, stored)
            return Stored(key, info, len(stored))

        async with gate.slot():
            return await anyio.to_thread.run_sync(checked_and_written)

    async def get(self, key: str) -> bytes | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        return await anyio.Path(path).read_bytes()

    async def delete(self, key: str) -> None:
        path = self.path(key)
        if path is not None:
            await anyio.Path(path).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return self.prefix + key

    def key_from_url(self, url: str) -> str | None:
        if not url.startswith(self.prefix):
            return None
        key = url[len(self.prefix) :].split("?", 1)[0]
        return key if valid_key(key) else None
