"""The Python SDK: ``from shengtu.client import Client, AsyncClient``.

>>> with Client() as c:            # SHENGTU_API_URL and SHENGTU_API_KEY
...     task = c.generate("sc_soraimg_text_1x1", "一只柴犬")
...     c.download(task, "dog.png")
"""

from shengtu.client.core import (
    AsyncClient,
    Balance,
    Client,
    Model,
    Quote,
    ShengtuAPIError,
    Task,
)

__all__ = ["AsyncClient", "Balance", "Client", "Model", "Quote", "ShengtuAPIError", "Task"]
