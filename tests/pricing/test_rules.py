"""A model's parameters and its price rule, as stored and as applied: every rule kind, the
rounding, and every definition an operator could get wrong refused with its reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shengtu.errors import BadRequest
from shengtu.pricing.parameters import Chosen, InvalidParameters, Parameters
from shengtu.pricing.rules import PriceRule
from shengtu.pricing.service import cheapest_each, group_price

PARAMS: dict[str, Any] = {
    "choices": {
        "size": {
            "values": ["1024x1024", "1024x1536", "1536x1024"],
            "default": "1024x1024",
            "upstream": "image_size",
            "map": {"1024x1536": "portrait_4_3"},
        },
        "quality": {"values": ["low", "medium", "high"], "default": "medium"},
    },
    "maxN": 4,
    "maxReferences": 3,
    "extra": ["seed"],
}
RULE: dict[str, Any] = {
    "choices": {
        "size": {"1024x1536": {"times": "1.5"}, "1536x1024": {"plus": 7}},
        "quality": {"low": {"points": 10}, "high": {"points": 160}},
    },
    "perReference": 5,
}


def test_the_stored_shapes_survive_a_round_trip() -> None:
    params = Parameters.parse(PARAMS)
    assert Parameters.parse(params.to_json()) == params
    assert params.to_json() == PARAMS
    rule = PriceRule.parse(RULE)
    assert PriceRule.parse(rule.to_json()) == rule
    assert Parameters.parse(None).to_json() == {} and PriceRule.parse({}).to_json() == {}


@pytest.mark.parametrize(
    ("values", "references", "listed"),
    [
        ({"size": "1024x1024", "quality": "medium"}, 0, Decimal(40)),  # the base
        ({"size": "1024x1536", "quality": "medium"}, 0, Decimal(60)),  # times
        ({"size": "1536x1024", "quality": "medium"}, 0, Decimal(47)),  # plus
        ({"size": "1024x1024", "quality": "high"}, 0, Decimal(160)),  # a fixed price
        ({"size": "1024x1536", "quality": "low"}, 0, Decimal(15)),  # fixed × times
        ({"size": "1024x1024", "quality": "medium"}, 2, Decimal(50)),  # per reference
        ({"size": "1024x1024", "quality": "unpriced"}, 0, Decimal(40)),  # unnamed: base
    ],
)
def test_each_rule_kind(values: dict[str, str], references: int, listed: Decimal) -> None:
    assert PriceRule.parse(RULE).each(Decimal(40), values, references) == listed


def test_the_group_multiplier_applies_last_and_rounds_up_once() -> None:
    rule = PriceRule.parse({"choices": {"size": {"1024x1536": {"times": "1.333"}}}})
    listed = rule.each(Decimal(10), {"size": "1024x1536"})
    assert listed == Decimal("13.330")
    # 13.33 × 0.5 = 6.665: one ceil at the end, not one per step (7, not 7 × … or 14 / 2).
    assert group_price(listed, Decimal("0.5")) == 7
    assert group_price(Decimal(40), Decimal("0.85")) == 34
    assert group_price(Decimal("8.5"), None) == 9


def test_the_cheapest_picture_looks_at_every_value() -> None:
    # A fixed low price undercuts the base: a refusal before the upload must not ask more.
    assert cheapest_each(40, RULE, PARAMS, references=1) == Decimal(15)
    assert cheapest_each(40, {}, {}, references=0) == Decimal(40)


def test_a_request_chooses_among_the_values_offered() -> None:
    params = Parameters.parse(PARAMS)
    chosen = params.choose("m", {"size": "1024x1536", "seed": 7}, n=3, references=1)
    assert chosen == Chosen({"size": "1024x1536", "quality": "medium"}, 3, 1, {"seed": 7})
    assert Chosen.from_json(chosen.to_json()) == chosen
    assert params.upstream_fields(chosen) == {
        "image_size": "portrait_4_3",
        "quality": "medium",
        "seed": 7,
    }
    # A channel that spells them its own way.
    mapping = {"quality": {"upstream": "q", "map": {"medium": "standard"}}}
    assert params.upstream_fields(chosen, mapping)["q"] == "standard"
    assert Chosen.from_json(None) == Chosen()


@pytest.mark.parametrize(
    ("asked", "n", "references", "param", "offered"),
    [
        ({"size": "640x480"}, 1, 0, "size", ["1024x1024", "1024x1536", "1536x1024"]),
        ({"quality": "ultra"}, 1, 0, "quality", ["low", "medium", "high"]),
        ({"style": "vivid"}, 1, 0, "style", ["size", "quality", "seed"]),
        ({}, 5, 0, "n", ["1-4"]),
        ({}, 0, 0, "n", ["1-4"]),
        ({}, 1, 4, "imageUrl", ["0-3"]),
        ({"seed": "x" * 600}, 1, 0, None, None),
    ],
)
def test_a_value_not_offered_is_refused_with_what_is(
    asked: dict[str, Any], n: int, references: int, param: str | None, offered: Any
) -> None:
    with pytest.raises(BadRequest) as refused:
        Parameters.parse(PARAMS).choose("gpt-image-1", asked, n, references)
    assert str(refused.value.message).startswith("参数错误:")
    if param is not None:
        assert refused.value.data == {"param": param, "offered": offered}


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"choices": {"colour": {"values": ["red"]}}}, "未知的可选参数"),
        ({"choices": {"size": {"values": []}}}, "values"),
        ({"choices": {"size": {"values": ["a", "a"]}}}, "values"),
        ({"choices": {"size": {"values": ["a"], "default": "b"}}}, "默认值"),
        ({"choices": {"size": {"values": ["a"], "map": {"b": "x"}}}}, "map"),
        ({"choices": {"size": {"values": ["a"], "shape": 1}}}, "未知字段"),
        ({"maxN": 0}, "maxN"),
        ({"maxN": 11}, "maxN"),
        ({"maxN": True}, "maxN"),
        ({"extra": ["prompt"]}, "extra"),
        ({"extra": "seed"}, "extra"),
        ({"colour": 1}, "未知字段"),
        ([], "JSON 对象"),
    ],
)
def test_a_bad_parameter_definition_is_refused(params: Any, reason: str) -> None:
    with pytest.raises(InvalidParameters, match=reason):
        Parameters.parse(params)


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"choices": {"size": {"a": {"points": 1}}, "quality": {"b": {"points": 2}}}}, "固定价格"),
        ({"choices": {"size": {"a": {"times": 0}}}}, "正数"),
        ({"choices": {"size": {"a": {"times": -1}}}}, "正数"),
        ({"choices": {"size": {"a": {"plus": "abc"}}}}, "数字"),
        ({"choices": {"size": {"a": {"points": 1, "times": 2}}}}, "之一"),
        ({"choices": {"size": {"a": {"discount": 1}}}}, "之一"),
        ({"choices": {"size": {"a": {"times": "1.00001"}}}}, "小数"),
        ({"choices": {"colour": {"a": {"times": 2}}}}, "不是可选参数"),
        ({"perReference": -1}, "非负"),
        ({"perReference": True}, "数字"),
        ({"base": 3}, "未知字段"),
    ],
)
def test_a_bad_rule_is_refused(rule: Any, reason: str) -> None:
    with pytest.raises(InvalidParameters, match=reason):
        PriceRule.parse(rule)


def test_a_rule_may_price_only_what_the_model_offers() -> None:
    offered = {n: c.values for n, c in Parameters.parse(PARAMS).choices.items()}
    PriceRule.parse(RULE).check_against(offered)
    with pytest.raises(InvalidParameters, match="不提供的取值"):
        PriceRule.parse({"choices": {"size": {"4096x4096": {"times": 4}}}}).check_against(offered)
    with pytest.raises(InvalidParameters, match="没有的参数"):
        PriceRule.parse({"choices": {"resolution": {"4K": {"times": 4}}}}).check_against(offered)


def test_a_rule_that_is_not_an_object_is_refused() -> None:
    for rule in ([], "x", 3):
        with pytest.raises(InvalidParameters, match="JSON 对象"):
            PriceRule.parse(rule)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameters, match="choices"):
        Parameters.parse({"choices": ["size"]})
