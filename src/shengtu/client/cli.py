"""``shengtu gen``, ``shengtu tasks``, ``shengtu balance``: the API from a terminal, with
``SHENGTU_API_URL`` and ``SHENGTU_API_KEY``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import typer

from shengtu.client.core import Client, ShengtuAPIError, Task

BAR = 30
STATUS_WORDS = {
    "created": "已提交",
    "queued": "排队中",
    "processing": "生成中",
    "completed": "已完成",
    "failed": "失败",
}


class ProgressBar:
    """One line per task on stderr, redrawn as its progress moves."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.live = sys.stderr.isatty()
        self.last = ""

    def __call__(self, task: Task) -> None:
        filled = BAR * task.progress // 100
        line = (
            f"{self.label} [{'#' * filled}{'.' * (BAR - filled)}] {task.progress:3d}% "
            f"{STATUS_WORDS.get(task.status, task.status)}"
        )
        if line == self.last:
            return
        self.last = line
        if self.live:
            sys.stderr.write("\r" + line)
            if task.done:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


@contextmanager
def _session() -> Iterator[Client]:
    """A client from the environment; a refusal or a lost connection ends the command
    with its reason (exit 1), a missing key with exit 2."""
    try:
        client = Client()
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    with client:
        try:
            yield client
        except ShengtuAPIError as exc:
            typer.echo(f"错误 {exc.code}:{exc.message}", err=True)
            raise typer.Exit(1) from exc
        except httpx.HTTPError as exc:
            typer.echo(f"无法连接 {client.base_url}:{type(exc).__name__}", err=True)
            raise typer.Exit(1) from exc


def _out_path(out: Path, index: int, count: int) -> Path:
    if count == 1:
        return out
    return out.with_name(f"{out.stem}-{index + 1}{out.suffix or '.png'}")


def gen(
    prompt: Annotated[str, typer.Argument(help="提示词")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="模型(默认:自动比例的文生图或图生图)")
    ] = None,
    image: Annotated[
        list[Path] | None, typer.Option("--image", "-i", help="参考图(可多次给出)")
    ] = None,
    count: Annotated[int, typer.Option("-n", min=1, max=4, help="生成几张(每张一个任务)")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="保存到")] = Path("out.png"),
) -> None:
    """Make pictures and save them; a progress bar follows each task live."""
    images = list(image or [])
    chosen = model or ("sc_soraimg_img2img_auto" if images else "sc_soraimg_text_auto")
    failed = 0
    with _session() as client:
        urls = [client.upload(p) for p in images]
        submitted = [client.submit(chosen, prompt, image_urls=urls) for _ in range(count)]
        for index, task in enumerate(submitted):
            bar = ProgressBar(task.task_no)
            done = client.wait(task.task_no, on_progress=bar)
            if done.status == "completed":
                saved = client.download(done, _out_path(out, index, count))
                typer.echo(f"{done.task_no}\t{saved}\t{done.result_url}")
            else:
                failed += 1
                typer.echo(f"{done.task_no}\t失败:{done.error_message}(积分已退还)", err=True)
    if failed:
        raise typer.Exit(1)


def tasks(
    size: Annotated[int, typer.Option("--size", min=1, max=100)] = 10,
    status: Annotated[str | None, typer.Option("--status")] = None,
) -> None:
    """Your latest tasks."""
    with _session() as client:
        for t in client.tasks(size=size, status=status):
            where = t.result_url or t.error_message or ""
            typer.echo(f"{t.task_no}\t{t.status}\t{t.progress}%\t{t.model_name}\t{where}")


def balance() -> None:
    """Your points."""
    with _session() as client:
        typer.echo(f"{client.balance().balance} 积分")
