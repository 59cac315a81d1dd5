"""A model's parameters: which values it offers for each choice (size, aspect ratio,
resolution tier, quality), how many pictures one task may ask for, how many reference
images it takes, and which free extra fields pass through to the upstream. Pure: no
database, no HTTP; the catalog keeps them as JSON (``points_config.params``) and a task
records the values it was made with (``ai_task.params``).

The stored shape (the API's ``parameters``)::

    {"choices": {"size": {"values": ["1024x1024", "1024x1536"], "default": "1024x1024",
                          "upstream": "size", "map": {"1024x1536": "2:3"}}},
     "maxN": 4, "maxReferences": 4, "extra": ["seed"]}

``upstream`` names the upstream's field (default: the choice's own name) and ``map`` its
spelling of a value (default: the value as offered); a channel may map them otherwise
(``channel_model.param_map``, the same shape as a choice's ``upstream``/``map``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shengtu.errors import BadRequest

# The choices a model may offer, under the names a request gives them.
CHOICE_NAMES = ("size", "aspectRatio", "resolution", "quality")
# Fields a request may not pass on as "extra": the platform sets them.
RESERVED = frozenset({"model", "prompt", "n", "image", "image_url", "images", *CHOICE_NAMES})
MAX_N = 10
MAX_EXTRA_VALUE_CHARS = 512


class InvalidParameters(ValueError):
    """A model's parameters that cannot be stored (an operator's mistake), in Chinese."""


@dataclass(frozen=True, slots=True)
class Choice:
    name: str
    values: tuple[str, ...]
    default: str
    upstream: str
    upstream_values: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"values": list(self.values), "default": self.default}
        if self.upstream != self.name:
            out["upstream"] = self.upstream
        if self.upstream_values:
            out["map"] = dict(self.upstream_values)
        return out


@dataclass(frozen=True, slots=True)
class Parameters:
    choices: Mapping[str, Choice] = field(default_factory=dict)
    max_n: int = 1
    max_references: int | None = None  # None: the platform's limit
    extra: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Parameters:
        """The stored JSON as parameters; InvalidParameters naming the first fault."""
        if raw is None:
            return NONE
        if not isinstance(raw, Mapping):
            raise InvalidParameters("参数定义必须是 JSON 对象")
        unknown = set(raw) - {"choices", "maxN", "maxReferences", "extra"}
        if unknown:
            raise InvalidParameters(f"参数定义中有未知字段:{', '.join(sorted(unknown))}")
        choices: dict[str, Choice] = {}
        raw_choices = raw.get("choices") or {}
        if not isinstance(raw_choices, Mapping):
            raise InvalidParameters("参数定义的 choices 必须是 JSON 对象")
        for name, spec in raw_choices.items():
            choices[name] = _parse_choice(name, spec)
        max_n = _whole(raw.get("maxN", 1), "maxN", 1, MAX_N)
        max_refs = raw.get("maxReferences")
        refs = None if max_refs is None else _whole(max_refs, "maxReferences", 0, 16)
        extra = raw.get("extra") or []
        if not isinstance(extra, list) or not all(isinstance(e, str) and e for e in extra):
            raise InvalidParameters("extra 必须是字段名的列表")
        clash = sorted(set(extra) & RESERVED)
        if clash:
            raise InvalidParameters(f"extra 不能包含平台自己设置的字段:{', '.join(clash)}")
        return cls(choices, max_n, refs, tuple(extra))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.choices:
            out["choices"] = {n: c.to_json() for n, c in self.choices.items()}
        if self.max_n != 1:
            out["maxN"] = self.max_n
        if self.max_references is not None:
            out["maxReferences"] = self.max_references
        if self.extra:
            out["extra"] = list(self.extra)
        return out

    def choose(
        self,
        model_name: str,
        asked: Mapping[str, Any] | None,
        n: int = 1,
        references: int = 0,
    ) -> Chosen:
        """The values a request chose (a default where it chose none), checked against
        what the model offers: 400 naming the parameter and the values offered."""
        asked = dict(asked or {})
        values: dict[str, str] = {}
        for name, choice in self.choices.items():
            value = asked.pop(name, None)
            if value is None or value == "":
                values[name] = choice.default
                continue
            value = str(value)
            if value not in choice.values:
                raise _not_offered(model_name, name, value, list(choice.values))
            values[name] = value
        extra: dict[str, Any] = {}
        for name in list(asked):
            if name in self.extra:
                extra[name] = _extra_value(name, asked.pop(name))
        if asked:
            name = sorted(asked)[0]
            offered = [*self.choices, *self.extra]
            raise BadRequest(
                f"参数错误:模型 {model_name} 没有参数 {name[:32]},"
                f"可用参数:{', '.join(offered) if offered else '无'}",
                data={"param": name[:32], "offered": offered},
            )
        if not 1 <= n <= self.max_n:
            raise _not_offered(model_name, "n", str(n), [f"1-{self.max_n}"])
        if self.max_references is not None and references > self.max_references:
            raise BadRequest(
                f"参数错误:模型 {model_name} 最多接受 {self.max_references} 张参考图,"
                f"收到 {references} 张",
                data={"param": "imageUrl", "offered": [f"0-{self.max_references}"]},
            )
        return Chosen(values, n, references, extra)

    def upstream_fields(
        self, chosen: Chosen, mapping: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``chosen`` in the upstream's own field names and spellings: ``mapping`` (a
        channel's, per choice ``{"upstream": field, "map": {value: spelling}}``) first,
        then the model's own."""
        out: dict[str, Any] = {}
        for name, value in chosen.values.items():
            choice = self.choices.get(name)
            own = (mapping or {}).get(name) or {}
            target = own.get("upstream") or (choice.upstream if choice else name)
            spellings = own.get("map") or (choice.upstream_values if choice else {})
            out[str(target)] = spellings.get(value, value)
        out.update(chosen.extra)
        return out


NONE = Parameters()


@dataclass(frozen=True, slots=True)
class Chosen:
    """What one request chose: a value for every choice, ``n`` pictures, the number of
    reference images, and the extra fields passed on as given."""

    values: Mapping[str, str] = field(default_factory=dict)
    n: int = 1
    references: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Chosen:
        """What :meth:`to_json` recorded on a task (an older task's NULL: nothing chosen)."""
        if not raw:
            return cls()
        rest = dict(raw)
        n = int(rest.pop("n", 1))
        references = int(rest.pop("references", 0))
        extra = dict(rest.pop("extra", None) or {})
        return cls({k: str(v) for k, v in rest.items()}, n, references, extra)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.values,
            "n": self.n,
            "references": self.references,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }


def _not_offered(model_name: str, name: str, value: str, offered: list[str]) -> BadRequest:
    return BadRequest(
        f"参数错误:模型 {model_name} 不提供 {name}={value[:32]},可选值:{', '.join(offered)}",
        data={"param": name, "offered": offered},
    )


def _extra_value(name: str, value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str) and len(value) <= MAX_EXTRA_VALUE_CHARS and "\x00" not in value:
        return value
    raise BadRequest(
        f"参数错误:参数 {name[:32]} 只能是数字、布尔值"
        f"或不超过 {MAX_EXTRA_VALUE_CHARS} 个字符的字符串"
    )


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameters(f"{name} 必须是 {low} 到 {high} 之间的整数")
    return value


def _parse_choice(name: str, spec: Any) -> Choice:
    if name not in CHOICE_NAMES:
        raise InvalidParameters(f"未知的可选参数 {name[:32]},只能是 {', '.join(CHOICE_NAMES)}")
    if not isinstance(spec, Mapping):
        raise InvalidParameters(f"参数 {name} 的定义必须是 JSON 对象")
    unknown = set(spec) - {"values", "default", "upstream", "map"}
    if unknown:
        raise InvalidParameters(f"参数 {name} 的定义中有未知字段:{', '.join(sorted(unknown))}")
    values = spec.get("values")
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and 0 < len(v) <= 32 for v in values)
        or len(set(values)) != len(values)
    ):
        raise InvalidParameters(f"参数 {name} 的 values 必须是不重复的非空字符串列表")
    default = spec.get("default", values[0])
    if default not in values:
        raise InvalidParameters(f"参数 {name} 的默认值 {default} 不在 values 中")
    upstream = spec.get("upstream", name)
    if not isinstance(upstream, str) or not upstream:
        raise InvalidParameters(f"参数 {name} 的 upstream 必须是字段名")
    mapped = spec.get("map") or {}
    if not isinstance(mapped, Mapping) or not all(
        k in values and isinstance(v, str | int | float) for k, v in mapped.items()
    ):
        raise InvalidParameters(f"参数 {name} 的 map 只能为 values 中的取值给出上游写法")
    return Choice(name, tuple(values), default, upstream, dict(mapped))
