"""Which catalog model an OpenAI request's ``model`` and ``size`` name."""

from __future__ import annotations

import pytest

from shengtu.catalog.service import CatalogModel
from shengtu.openai_compat.service import Refused, model_names, resolve_model


def model(name: str, task_type: str = "text_to_image", ratio: str | None = None) -> CatalogModel:
    return CatalogModel(name, name, 30, task_type, ratio, "suchuang", "up")


SPEC = [
    model("sc_soraimg_text_auto", ratio="auto"),
    model("sc_soraimg_text_1x1", ratio="1:1"),
    model("sc_soraimg_text_2x3", ratio="2:3"),
    model("sc_soraimg_text_3x2", ratio="3:2"),
    model("sc_soraimg_img2img_1x1", "image_to_image", "1:1"),
    model("sc_soraimg_img2img_auto", "image_to_image", "auto"),
]


@pytest.mark.parametrize(
    ("name", "size", "task_type", "chosen"),
    [
        ("gpt-image-1", None, "text_to_image", "sc_soraimg_text_auto"),
        ("gpt-image-1", "1536x1024", "text_to_image", "sc_soraimg_text_3x2"),
        ("sc_soraimg", "1024x1536", "text_to_image", "sc_soraimg_text_2x3"),
        ("gpt-image-1", "1024x1024", "image_to_image", "sc_soraimg_img2img_1x1"),
        ("sc_soraimg_text_1x1", "1536x1024", "text_to_image", "sc_soraimg_text_1x1"),
    ],
)
def test_aliases_choose_by_size_and_names_are_taken_as_they_are(
    name: str, size: str | None, task_type: str, chosen: str
) -> None:
    assert resolve_model(SPEC, name, size, task_type).model_name == chosen


def test_an_operators_model_of_an_aliass_name_wins_and_is_listed_once() -> None:
    catalog = [*SPEC, model("gpt-image-1", ratio=None)]
    assert resolve_model(catalog, "gpt-image-1", "1536x1024", "text_to_image").model_name == (
        "gpt-image-1"
    )
    names = model_names(catalog, None)
    assert names.count("gpt-image-1") == 1 and "sc_soraimg" in names


def test_refusals_name_their_parameter() -> None:
    for name, size, task_type, status, param in [
        ("gpt-image-1", "640x480", "text_to_image", 400, "size"),
        ("sc_soraimg_img2img_1x1", None, "text_to_image", 400, "model"),
        ("dall-e-3", None, "text_to_image", 404, "model"),
        ("gpt-image-1", "1536x1024", "image_to_image", 404, "model"),
    ]:
        with pytest.raises(Refused) as refused:
            resolve_model(SPEC, name, size, task_type)
        assert (refused.value.status, refused.value.param) == (status, param)
    # A key limited to some models lists only those, and the aliases that reach them.
    assert model_names(SPEC, ("sc_soraimg_img2img_1x1",)) == [
        "gpt-image-1",
        "sc_soraimg",
        "sc_soraimg_img2img_1x1",
    ]
