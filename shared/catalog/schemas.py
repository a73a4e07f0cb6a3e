"""The catalog's wire shapes: a model on offer, the list of them, a price preview and a
binding quote."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from shared.catalog.builtin import Catalog, VideoModel, all_models
from shared.catalog.pricing import Quote
from shared.ledger.credits import to_credits
from shared.wire import Closed, Open, QueryInt

PriceUnit = Literal["second", "video"]
CREDITS = "Credits, to two decimals."


class Pricing(Open):
    model_config = ConfigDict(title="ModelPricing")

    unit_price_usd: float
    unit: PriceUnit
    credit_value_usd: float


class Parameter(BaseModel):
    """One input parameter: its JSON Schema, with `required` and `default`."""

    model_config = ConfigDict(extra="allow")

    type: str
    description: str
    required: bool
    default: Any


class Model(Open):
    id: str
    name: str
    mode: Literal["text-to-video", "image-to-video"]
    best_for: str
    description: str
    parameters: dict[str, Parameter]
    input_schema: dict[str, Any] = Field(description="The JSON Schema of `input`.")
    pricing: Pricing
    estimated_seconds: int

    @classmethod
    def of(cls, model: VideoModel, credit_value_usd: float) -> Model:
        return cls(
            id=model.id,
            name=model.name,
            mode=model.mode,  # type: ignore[arg-type]  # TEXT_TO_VIDEO or IMAGE_TO_VIDEO
            best_for=model.best_for,
            description=model.description,
            parameters={
                name: Parameter.model_validate(
                    {**schema, "required": name in model.required, "default": schema.get("default")}
                )
                for name, schema in model.properties.items()
            },
            input_schema=model.input_schema,
            pricing=Pricing(
                unit_price_usd=float(model.unit_price_usd),
                unit=model.price_unit,  # type: ignore[arg-type]
                credit_value_usd=credit_value_usd,
            ),
            estimated_seconds=model.estimated_seconds,
        )


class ModelList(Open):
    data: list[Model]
    count: int
    source: str = Field(description="`builtin`, or the provider that priced.")

    @classmethod
    def of(cls, catalog: Catalog, credit_value_usd: float) -> ModelList:
        data = [Model.of(model, credit_value_usd) for model in catalog.models]
        return cls(data=data, count=len(data), source=catalog.source)


class PriceQuote(Open):
    model_config = ConfigDict(title="Pricing")

    model: str
    duration: int = Field(description="Output seconds.")
    estimated_credits: float = Field(description=CREDITS)
    unit_price_usd: float
    unit: PriceUnit
    credit_value_usd: float

    @classmethod
    def of(cls, quote: Quote) -> PriceQuote:
        return cls(
            model=quote.model,
            duration=quote.duration,
            estimated_credits=to_credits(quote.units),
            unit_price_usd=float(quote.unit_price_usd),
            unit=quote.price_unit,  # type: ignore[arg-type]
            credit_value_usd=float(quote.credit_value_usd),
        )


def _durations() -> JsonDict:
    values = [
        int(value)
        for model in all_models()
        for value in model.properties.get("duration", {}).get("enum", [])
    ]
    return {"minimum": min(values), "maximum": max(values)}


class PricingQuery(BaseModel):
    model: str = Field(
        description="A model id.",
        json_schema_extra={"enum": [model.id for model in all_models()]},
    )
    duration: QueryInt | None = Field(
        default=None,
        description="Output seconds, one the model's `duration` accepts (its default if "
        "omitted); 422 for a model priced per video, which takes none, as generate refuses it.",
        json_schema_extra=_durations(),
    )
    dur: QueryInt | None = Field(
        default=None,
        description="Alias of `duration`.",
        json_schema_extra={**_durations(), "deprecated": True},
    )


class QuoteRequest(Closed):
    """`POST /v1/video/quotes`: a model and its input, as `POST /v1/video/generate` takes
    them; the answer's `quote_id` binds the price of exactly that request until it expires."""

    model_config = ConfigDict(title="QuoteRequest")

    model: str = Field(description="A model id from GET /v1/video/models.")
    input: dict[str, Any] = Field(description="The model's parameters, as for generate.")


class BindingQuote(PriceQuote):
    """A binding quote: `POST /v1/video/generate` with the same model and input and this
    `quote_id` holds and charges `estimated_credits` until `expires_at`, whatever the
    catalog's price by then."""

    model_config = ConfigDict(title="Quote")

    quote_id: uuid.UUID
    input: dict[str, Any] = Field(description="The input quoted, defaults filled in.")
    expires_at: datetime
