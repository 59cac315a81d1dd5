"""The operator's payment methods as providers: a method row's settings with its secrets
opened (``SHENGTU_SECRET_KEY``, as channel keys are), and the one HTTP client every
provider of this process talks through."""

from __future__ import annotations

from typing import Any

import httpx

from shengtu.channels.secrets import KeyBox, mask
from shengtu.errors import BadRequest
from shengtu.models.payments import PaymentMethod
from shengtu.payments.base import ConfigField, PaymentProvider
from shengtu.payments.providers import PROVIDERS

TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def provider_class(kind: str) -> type[PaymentProvider]:
    found = PROVIDERS.get(kind)
    if found is None:
        raise BadRequest(f"参数错误:不支持的支付类型 {kind}(可选:{'、'.join(PROVIDERS)})")
    return found


def secret_fields(kind: str) -> set[str]:
    return {f.name for f in provider_class(kind).fields if f.secret}


class PaymentGateways:
    """Builds a method's provider on demand (a method's settings may change at any time;
    a provider is cheap), all on one HTTP client, closed with the context."""

    def __init__(self, key_box: KeyBox) -> None:
        self.key_box = key_box
        self.http = httpx.AsyncClient(
            timeout=TIMEOUT,
            headers={"User-Agent": "Shengtu/0.1"},
            follow_redirects=False,
        )

    def config_of(self, method: PaymentMethod) -> dict[str, str]:
        """The method's settings, secrets opened, the kind's defaults filled in."""
        cls = provider_class(method.kind)
        config = {f.name: f.default for f in cls.fields}
        config.update({k: str(v) for k, v in (method.config or {}).items()})
        for name, sealed in (method.sealed or {}).items():
            config[name] = self.key_box.open(str(sealed))
        return config

    def provider(self, method: PaymentMethod) -> PaymentProvider:
        return provider_class(method.kind)(self.config_of(method), self.http)

    async def aclose(self) -> None:
        await self.http.aclose()


def shown_config(method: PaymentMethod, key_box: KeyBox) -> dict[str, Any]:
    """The settings as the operator's form shows them: a secret only as its mask."""
    shown: dict[str, Any] = dict(method.config or {})
    for name, sealed in (method.sealed or {}).items():
        try:
            shown[name] = mask(key_box.open(str(sealed)))
        except ValueError:
            shown[name] = "…"
    return shown


def field_out(field: ConfigField) -> dict[str, Any]:
    return {
        "name": field.name,
        "label": field.label,
        "secret": field.secret,
        "required": field.required,
        "default": field.default,
        "multiline": field.multiline,
    }
