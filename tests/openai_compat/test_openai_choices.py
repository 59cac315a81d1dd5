"""How an OpenAI request's ``size``, ``quality`` and ``n`` become a catalog model's
parameters (honoured, or refused naming the field), and what GET /v1/models tells of a
model."""

from __future__ import annotations

import pytest

from shengtu.api.i18n import english
from shengtu.catalog.demo import DEMO_MODELS
from shengtu.catalog.service import CatalogModel
from shengtu.openai_compat.service import (
    Refused,
    model_cards,
    openai_parameters,
    resolve_model,
)
from shengtu.pricing.parameters import Parameters
from shengtu.pricing.rules import PriceRule


def demo(name: str) -> CatalogModel:
    row = next(m for m in DEMO_MODELS if m["model_name"] == name)
    return CatalogModel(
        row["model_name"],
        row["description"],
        row["points_cost"],
        row["task_type"],
        row["aspect_ratio"],
        row["provider"],
        row["upstream_model"],
        row["upstream_params"],
        Parameters.parse(row.get("params")),
        PriceRule.parse(row.get("price_rule")),
    )


GPT, FLUX = demo("gpt-image-1"), demo("flux-schnell")
SQUARE = CatalogModel("sc_soraimg_text_1x1", "1:1", 30, "text_to_image", "1:1", "suchuang", "up")
AUTO = CatalogModel("sc_soraimg_text_auto", "auto", 30, "text_to_image", "auto", "suchuang", "up")
EDIT = CatalogModel("sc_soraimg_img2img_1x1", "e", 35, "image_to_image", "1:1", "suchuang", "up")


def refused(model: CatalogModel, name: str | None = None, **asked: object) -> Refused:
    fields = {"size": None, "quality": None, "n": 1, **asked}
    with pytest.raises(Refused) as caught:
        openai_parameters(model, name or model.model_name, **fields)  # type: ignore[arg-type]
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(
    ("size", "quality", "parameters"),
    [
        (None, None, {}),
        ("auto", "auto", {}),
        ("1024x1536", None, {"size": "1024x1536"}),
        ("1536x1024", "high", {"size": "1536x1024", "quality": "high"}),
        ("1024x1024", "low", {"size": "1024x1024", "quality": "low"}),
        # dall-e's words: standard is the ordinary quality (the default), hd the high one.
        (None, "standard", {}),
        (None, "hd", {"quality": "high"}),
    ],
)
def test_a_model_with_size_and_quality_choices_takes_openais_values(
    size: str | None, quality: str | None, parameters: dict[str, str]
) -> None:
    asked = openai_parameters(GPT, "gpt-image-1", size=size, quality=quality, n=1)
    assert asked.parameters == parameters
    defaults = {"size": "1024x1024", "quality": "medium"}
    assert dict(asked.chosen.values) == {**defaults, **parameters}
    assert (asked.count, asked.chosen.n) == (1, 1)


def test_values_a_model_lacks_are_refused_naming_the_field_and_listing_the_offer() -> None:
    wrong_size = refused(GPT, size="512x512")
    assert wrong_size.param == "size"
    assert wrong_size.message == (
        "参数错误:模型 gpt-image-1 不提供 size=512x512,可选值:auto, 1024x1024, 1024x1536, 1536x1024"
    )
    assert english(wrong_size.message, 400) == (
        "Invalid parameter: model gpt-image-1 does not offer size=512x512; "
        "offered: auto, 1024x1024, 1024x1536, 1536x1024"
    )
    assert refused(GPT, quality="ultra").param == "quality"
    # More reference pictures than the model takes: OpenAI's field is "image".
    too_many = refused(GPT, references=5)
    assert too_many.param == "image" and "最多接受 4 张参考图" in too_many.message


def test_n_is_one_task_when_the_model_makes_that_many_else_n_tasks_of_one() -> None:
    three = openai_parameters(GPT, "gpt-image-1", size=None, quality="high", n=3)
    assert (three.count, three.chosen.n, three.pictures) == (1, 3, 3)
    spec = openai_parameters(SQUARE, SQUARE.model_name, size=None, quality=None, n=3)
    assert (spec.count, spec.chosen.n, spec.pictures) == (3, 1, 3)
    four = openai_parameters(FLUX, "flux-schnell", size=None, quality=None, n=4)
    assert (four.count, four.chosen.n) == (1, 4)
    # The references are counted (the price rule charges each).
    edit = openai_parameters(GPT, "gpt-image-1", size=None, quality=None, n=2, references=2)
    assert (edit.chosen.n, edit.chosen.references) == (2, 2)


def test_an_aspect_ratio_choice_takes_a_size_of_that_ratio() -> None:
    for size, ratio in [
        (None, "1:1"),
        ("1024x1024", "1:1"),
        ("1344x768", "16:9"),
        ("1024x576", "16:9"),
        ("768x1024", "3:4"),
        ("1792x1024", "16:9"),  # dall-e's wide: 7:4, within 2% of 16:9
    ]:
        asked = openai_parameters(FLUX, "flux-schnell", size=size, quality=None, n=1)
        assert asked.chosen.values == {"aspectRatio": ratio}, size
    portrait = refused(FLUX, size="1024x1536")  # 2:3: not one of FLUX's here
    assert portrait.param == "size"
    assert "可选值:auto 或宽高比为 1:1, 16:9, 9:16, 4:3, 3:4 的尺寸" in portrait.message
    assert english(portrait.message, 400).endswith(
        "offered: auto or a size of aspect ratio 1:1, 16:9, 9:16, 4:3, 3:4"
    )
    assert refused(FLUX, size="wide").param == "size"
    assert refused(FLUX, size="1250x1000").param == "size"  # 5:4: 6% off 4:3
    assert refused(FLUX, quality="high").param == "quality"


def test_a_model_without_choices_takes_its_own_ratio_by_name_and_any_by_alias() -> None:
    # By its own name: auto, or the size of its aspect ratio.
    for size in (None, "auto", "1024x1024"):
        asked = openai_parameters(SQUARE, SQUARE.model_name, size=size, quality=None, n=1)
        assert asked.parameters == {} and asked.count == 1
    wide = refused(SQUARE, size="1536x1024")
    assert wide.param == "size" and wide.message.endswith("可选值:auto, 1024x1024")
    assert refused(AUTO, size="1024x1024").message.endswith("可选值:auto")
    # By an alias, the size chose the model.
    family = [SQUARE, AUTO]
    model = resolve_model(family, "gpt-image-1", "1024x1024", "text_to_image")
    assert model is SQUARE
    assert openai_parameters(model, "gpt-image-1", size="1024x1024", quality=None, n=1).count == 1
    # Quality: nothing to choose, so only auto (or dall-e's ordinary "standard").
    for quality in (None, "auto", "standard"):
        openai_parameters(SQUARE, "gpt-image-1", size=None, quality=quality, n=1)
    for quality in ("high", "hd", "low"):
        assert refused(SQUARE, "gpt-image-1", quality=quality).param == "quality"


def test_one_model_serves_generations_and_edits() -> None:
    catalog = [GPT, SQUARE, EDIT]
    assert resolve_model(catalog, "gpt-image-1", None, "text_to_image") is GPT
    assert resolve_model(catalog, "gpt-image-1", "1536x1024", "image_to_image") is GPT
    with pytest.raises(Refused) as wrong:
        resolve_model(catalog, "flux-schnell", None, "image_to_image")
    assert wrong.value.status == 404
    with pytest.raises(Refused) as wrong:
        resolve_model([FLUX], "flux-schnell", None, "image_to_image")
    assert (wrong.value.status, wrong.value.param) == (400, "model")


def test_the_model_list_tells_each_models_parameters_and_price_rule() -> None:
    cards = {c["id"]: c for c in model_cards([GPT, FLUX, SQUARE, AUTO, EDIT], None)}
    # A catalog model named like an alias is that model; the other alias stays.
    assert list(cards) == [
        "sc_soraimg",
        "gpt-image-1",
        "flux-schnell",
        "sc_soraimg_text_1x1",
        "sc_soraimg_text_auto",
        "sc_soraimg_img2img_1x1",
    ]
    gpt = cards["gpt-image-1"]
    assert gpt["task_type"] == "both" and gpt["points"] == 40
    assert gpt["parameters"] == {
        "choices": {
            "size": {"values": ["1024x1024", "1024x1536", "1536x1024"], "default": "1024x1024"},
            "quality": {"values": ["low", "medium", "high"], "default": "medium"},
        },
        "maxN": 4,
        "maxReferences": 4,
    }
    assert gpt["price_rule"] == {
        "choices": {
            "size": {"1024x1536": {"times": "1.5"}, "1536x1024": {"times": "1.5"}},
            "quality": {"low": {"points": 10}, "high": {"points": 160}},
        },
        "perReference": 5,
    }
    # The upstream's spelling stays the operator's.
    assert cards["flux-schnell"]["parameters"]["choices"]["aspectRatio"] == {
        "values": ["1:1", "16:9", "9:16", "4:3", "3:4"],
        "default": "1:1",
    }
    assert cards["sc_soraimg_text_1x1"]["price_rule"] == {}
    alias = cards["sc_soraimg"]
    assert alias["alias_of"] == ["sc_soraimg_text_1x1", "sc_soraimg_text_auto", EDIT.model_name]
    assert alias["parameters"]["choices"]["size"] == {
        "values": ["1024x1024", "auto"],
        "default": "auto",
    }
    assert "points" not in alias
