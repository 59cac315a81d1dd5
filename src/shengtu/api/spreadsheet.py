"""CSV exports for the operator: UTF-8 with a BOM (so a spreadsheet reads the Chinese), and
no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable

# Written out once this much is buffered.
FLUSH_CHARS = 65536


def safe_cell(value: object) -> str:
    """A spreadsheet must not read a cell as a formula (a note or a name may start with ``=``)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def csv_file(
    columns: Iterable[str], chunks: AsyncIterator[Iterable[Iterable[object]]]
) -> AsyncIterator[str]:
    """The file's text: the header, then each chunk's rows, every cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(columns)
    async for rows in chunks:
        writer.writerows((safe_cell(v) for v in row) for row in rows)
        if buffer.tell() > FLUSH_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
