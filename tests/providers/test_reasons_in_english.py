"""Every way each protocol's double can fail a job gives a reason that reads in English:
against each double, served in this process, the provider's own words for each fault,
translated as a task read with ``Accept-Language: en`` shows them. A refusal of the
content says so in English too, and only such a refusal does."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest

from shengtu.api.i18n import english_reason
from shengtu.providers.base import Provider, UpstreamError, UpstreamJob, is_moderation
from shengtu.providers.registry import PROTOCOLS
from shengtu.providers.sandbox.common import FAIL_MESSAGE
from shengtu.runner import running_sandbox
from tests.exchanges.test_every_protocol import MODELS
from tests.support import SANDBOX_SCALE

HAN = re.compile(r"[\u4e00-\u9fff]")
# The faults a double shows in its own answers (the rest, a bad picture or a job that
# never ends, are the worker's reasons: tests/tasks/test_reasons_in_english.py).
FAULTS = ("fail", "error500", "garbage", "status7", "poll429")
# 速创 is a Chinese upstream: its double's refusal is Chinese, quoted as it wrote it.
UPSTREAMS_OWN_WORDS = FAIL_MESSAGE.split(":", 1)[1]
MODERATED = "Rejected by content moderation: "


async def _reason(provider: Provider, directive: str) -> str | None:
    """What the provider says of a job with ``directive``: a failure's reason, or None
    when the job succeeded (the fault is not one this protocol can show)."""
    model, params = MODELS[provider.name]
    job = UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model=model,
        params=params,
        prompt=f"一只猫 [sandbox:{directive}]",
    )
    try:
        state = await provider.submit(job)
        for _ in range(100):
            if state.phase != "queued" and state.phase != "processing":
                break
            await asyncio.sleep(0.05)
            state = await provider.poll(state.upstream_id, job.task_no)
    except UpstreamError as exc:
        return exc.message
    assert state.phase in ("failed", "succeeded"), (directive, state)
    return state.error if state.phase == "failed" else None


@pytest.mark.parametrize("protocol", sorted(MODELS))
def test_each_fault_of_a_double_reads_in_english(protocol: str) -> None:
    spec = PROTOCOLS[protocol]

    async def run() -> dict[str, str | None]:
        key = "sk-" + secrets.token_hex(16)
        async with running_sandbox("127.0.0.1", 0, key, 0.05, scale=SANDBOX_SCALE) as end:
            provider = spec.provider(end.base_url + spec.sandbox_path, spec.sandbox_key(key))
            try:
                return {d: await _reason(provider, d) for d in FAULTS}
            finally:
                await provider.aclose()

    reasons = asyncio.run(run())
    # Every double fails a refused prompt and a 500, whatever else it shows.
    assert reasons["fail"] is not None and reasons["error500"] is not None, reasons
    for directive, chinese in reasons.items():
        if chinese is None:
            continue
        assert HAN.search(chinese), (directive, chinese)  # the stored reason stays Chinese
        english = english_reason(chinese)
        ours = english.replace(UPSTREAMS_OWN_WORDS, "")
        assert not HAN.search(ours), (directive, chinese, english)
        assert english[0].isupper(), english
        assert english.startswith(MODERATED) == is_moderation(chinese), (chinese, english)
    if protocol not in ("suchuang", "openai_images", "replicate"):
        # The protocols that say a refusal of the content as such.
        assert english_reason(str(reasons["fail"])).startswith(MODERATED), reasons["fail"]
