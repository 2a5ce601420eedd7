"""Thematic layers attached to the kernel. Each theme is one package; this collects them."""

from . import base, cctv, city_management, housing, legal_person, population
from .registry import Layer

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for module in (base, housing, population, legal_person, cctv, city_management)
    for layer in module.LAYERS
}


def get_layer(name: str) -> Layer:
    try:
        return LAYERS[name]
    except KeyError:
        raise KeyError(f"unknown layer {name!r}; layers: {', '.join(LAYERS)}") from None
