"""Recipes: Python functions that return fully resolved, validated study or stage configs."""
from __future__ import annotations

from typing import Callable

RECIPES: dict[str, str] = {
    "tiny_cpu": "recipes.tiny_cpu:tiny_cpu",
    "tiny_cpu_smoke": "recipes.tiny_cpu:tiny_cpu_smoke",
    "tiny_cpu_insertion": "recipes.tiny_cpu:tiny_cpu_insertion",
    "tiny_cpu_organism": "recipes.tiny_cpu:tiny_cpu_organism",
    "tiny_cpu_robustness": "recipes.tiny_cpu:tiny_cpu_robustness",
    "tiny_cpu_robustness_smoke": "recipes.tiny_cpu:tiny_cpu_robustness_smoke",
    "paper_6p9b": "recipes.paper_6p9b:paper_6p9b",
    "paper_6p9b_fp8": "recipes.paper_6p9b:paper_6p9b_fp8",
}


def get_recipe(name: str) -> Callable:
    import importlib

    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    module, func = RECIPES[name].split(":")
    return getattr(importlib.import_module(module), func)
