"""Every stored picture of a task, served under the URL the task hands out, carries the
implicit label with its task number (read back by Pillow, and exiftool where present):
PNG, JPEG and WebP results through the sandbox upstreams, text-to-image and a task of
several pictures; the visible label where the settings put it, and only on the models they
name; the task says what its pictures carry. On SQLite, MariaDB and PostgreSQL (the
column's migration)."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path

import httpx
from PIL import Image, ImageChops

from tests.labels.reading import EXIFTOOL, SOURCE_TYPE, exiftool_labels, labels_of
from tests.openai_compat.test_openai_model_parameters import add_demo_catalog
from tests.support import SANDBOX_MODEL, Platform, User, ok

# Where Pillow finds the AIGC JSON in each kind of result, beside the XMP packet.
OWN_PLACE = {"image/png": "text", "image/jpeg": "exif", "image/webp": "exif"}
KINDS = {"": "image/png", "[sandbox:jpeg] ": "image/jpeg", "[sandbox:webp] ": "image/webp"}


def check_labelled(url: str, task_no: str, producer: str) -> httpx.Response:
    """The picture at ``url``: it carries the AIGC label naming ``producer`` and
    ``task_no`` in its XMP and in its format's own place."""
    answer = httpx.get(url)
    assert answer.status_code == 200, url
    kind = answer.headers["content-type"]
    found = labels_of(answer.content)
    for place in ("xmp", OWN_PLACE[kind]):
        assert found[place]["Label"] == "1", (place, found)
        assert found[place]["ContentProducer"] == producer, (place, found)
        assert found[place]["ProduceID"] == task_no, (place, found)
    assert found["source"] == SOURCE_TYPE
    if EXIFTOOL:
        tags = exiftool_labels(answer.content, kind.split("/")[1])
        aigc = [json.loads(v) for k, v in tags.items() if k.lower().endswith(":aigc")]
        assert aigc and {a["ProduceID"] for a in aigc} == {task_no}, tags
    return answer


def run(user: User, **body: object) -> dict[str, object]:
    submitted = user.submit(**body)
    assert submitted["code"] == 200, submitted
    done = user.wait(submitted["data"]["taskNo"])
    assert done["status"] == "completed", done
    return done


def test_each_result_of_the_spec_models_is_labelled_in_png_jpeg_and_webp(
    platform: Platform,
) -> None:
    user = platform.new_user(points=1000)
    for directive, kind in KINDS.items():
        done = run(user, modelName=SANDBOX_MODEL, prompt=f"{directive}标识 {secrets.token_hex(4)}")
        answer = check_labelled(str(done["resultUrl"]), str(done["taskNo"]), "Shengtu")
        assert answer.headers["content-type"] == kind
        # The spec's models get the visible label by default; the task says so.
        assert done["labels"] == {"implicit": True, "visible": True}


def test_the_settings_name_the_provider_the_corner_and_the_models_shown(tmp_path: Path) -> None:
    """On SQLite alone: what is drawn and written into a picture does not depend on the
    database (test_each_result_of_the_spec_models_is_labelled… runs on every one)."""
    producer = "生图测试 <AIGC> & Co"
    platform = Platform(
        tmp_path,
        SHENGTU_LABEL_PROVIDER=producer,
        SHENGTU_LABEL_VISIBLE_MODELS=f"{SANDBOX_MODEL}, gpt-image-*",
        SHENGTU_LABEL_VISIBLE_POSITION="top-left",
        SHENGTU_LABEL_VISIBLE_SIZE="0.1",
    )
    add_demo_catalog(platform)
    with platform:
        sandbox, key = platform.sandbox_upstream()
        plain_model = "sc_soraimg_text_auto"
        platform.add_channel(
            protocol="suchuang",
            name="速创",
            baseUrl=sandbox,
            addKeys=[key],
            models=[
                {"modelName": m, "upstreamModel": "image_gpt", "upstreamParams": {"size": s}}
                for m, s in ((SANDBOX_MODEL, "1:1"), (plain_model, "auto"))
            ],
        )
        openai, openai_key = platform.sandbox_upstream("sk-" + secrets.token_hex(12))
        platform.add_channel(
            protocol="openai_images",
            name="OpenAI",
            baseUrl=openai,
            addKeys=[openai_key],
            models=[{"modelName": "gpt-image-1", "upstreamModel": "gpt-image-1"}],
        )
        user = platform.new_user(points=1000)

        def stored_and_upstream(model: str, prompt: str) -> tuple[Image.Image, Image.Image]:
            done = run(user, modelName=model, prompt=prompt)
            task_no = str(done["taskNo"])
            stored = check_labelled(str(done["resultUrl"]), task_no, producer)
            job = ok(platform.admin_client.get(f"/admin/tasks/{task_no}"))["task"]["upstreamId"]
            upstream = httpx.get(f"{sandbox}/results/{job}.png")
            assert upstream.status_code == 200
            assert done["labels"] == {"implicit": True, "visible": model == SANDBOX_MODEL}
            return (
                Image.open(io.BytesIO(stored.content)).convert("RGB"),
                Image.open(io.BytesIO(upstream.content)).convert("RGB"),
            )

        # Shown: in the top-left corner; the opposite corner as the upstream made it.
        for directive in KINDS:
            stored, upstream = stored_and_upstream(SANDBOX_MODEL, f"{directive}角落")
            w, h = stored.size
            diff = ImageChops.difference(stored, upstream).convert("L")
            label = diff.crop((0, 0, w // 2, h // 2)).point(lambda v: 255 * (v > 48)).getbbox()
            assert label is not None, directive
            # Lossless PNG: not one pixel changed there; JPEG and WebP drawn again: barely.
            far = diff.crop((w // 2, h // 2, w, h)).point(lambda v: 255 * (v > 24)).getbbox()
            assert far is None, (directive, far)
        # A model the settings do not name: its picture's pixels as the upstream made them.
        stored, upstream = stored_and_upstream(plain_model, "不显示")
        assert ImageChops.difference(stored, upstream).getbbox() is None

        # A task of several pictures: each carries the label with the task's number.
        done = run(
            user, modelName="gpt-image-1", prompt="三只猫", parameters={"quality": "low"}, n=3
        )
        urls = done["resultUrls"]
        assert isinstance(urls, list) and len(urls) == 3
        for url in urls:
            check_labelled(url, str(done["taskNo"]), producer)
        assert done["labels"] == {"implicit": True, "visible": True}
        platform.audit()
