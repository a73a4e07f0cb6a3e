"""The model catalog: what each model accepts, what it costs, how long it takes.

`builtin` defines the spec's models; `sync` overlays the provider's live listing and
prices; `pricing` turns a price into credits; `schemas` are the catalog's wire shapes.
"""

from shared.catalog.builtin import (
    BUILTIN,
    BUILTIN_MODELS,
    IMAGE_TO_VIDEO,
    TEXT_TO_VIDEO,
    Catalog,
    VideoModel,
    all_models,
    get_model,
    normalize_input,
)

__all__ = [
    "BUILTIN",
    "BUILTIN_MODELS",
    "IMAGE_TO_VIDEO",
    "TEXT_TO_VIDEO",
    "Catalog",
    "VideoModel",
    "all_models",
    "get_model",
    "normalize_input",
]
