"""A quote: what a submit would charge the calling user, worked out as the charge works it
out (the price rule over the model's base, the user's group multiplier, rounded up once),
without charging. Nothing is written; the charge itself reads the price again."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody
from shengtu.auth.principal import Principal
from shengtu.context import AppContext
from shengtu.errors import Forbidden
from shengtu.pricing import service as pricing
from shengtu.pricing.service import PriceQuery
from shengtu.tasks.service import check_model_takes, check_reference_count, parse_image_urls


class QuoteRequest(RequestBody):
    modelName: str = Field(min_length=1, max_length=64)
    # As a submit gives them: values for the model's choices and its extra fields, and
    # the pictures one task asks for.
    parameters: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1)
    # The reference images: their number, or the imageUrl a submit would send.
    references: int | None = Field(default=None, ge=0)
    imageUrl: str | list[str] | None = None


class QuoteOut(BaseModel):
    modelName: str
    # One picture's price for this user, and the pictures asked for: a submit charges
    # ``total`` = ``each`` × ``n``.
    each: int
    n: int
    total: int
    balance: int
    affordable: bool
    # The values priced, a default filled in for every choice not given (as a task records
    # them: with ``n`` and ``references``).
    parameters: dict[str, Any]


async def quote(ctx: AppContext, principal: Principal, body: QuoteRequest) -> QuoteOut:
    """The price of ``body`` for ``principal``'s user now, beside the balance. Refused as a
    submit would be (400 naming a value the model does not offer, and what it offers)."""
    model = await ctx.catalog.get(body.modelName)
    if model is None:
        raise pricing.gone(body.modelName)
    if principal.key_models is not None and model.model_name not in principal.key_models:
        raise Forbidden(f"该 API Key 不允许使用模型 {model.model_name}")
    limit = ctx.settings.max_reference_images
    if body.references is None:
        references = len(parse_image_urls(body.imageUrl, limit))
    else:
        references = body.references
        check_reference_count(references, limit)
    check_model_takes(model, references)
    chosen = model.parameters.choose(model.model_name, body.parameters, body.n, references)
    query = PriceQuery(principal.user_id, model.model_name, chosen.n, chosen)
    quoted = await pricing.quote(ctx.db, query)
    if quoted is None:
        # No points account yet: nothing to spend, and the price all the same.
        async with ctx.db.read() as session:
            balance, price = 0, await pricing.price_now(session, query)
    else:
        balance, price = quoted.balance, quoted.price
    return QuoteOut(
        modelName=model.model_name,
        each=price.each,
        n=chosen.n,
        total=price.total,
        balance=balance,
        affordable=balance >= price.total,
        parameters=chosen.to_json(),
    )
