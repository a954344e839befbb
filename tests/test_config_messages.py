"""What the config check says a parameter expects, for every kind of type hint a constructor
uses (`src.utils.config._describe`, through `check_types`' message)."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Literal

import pytest
from omegaconf import OmegaConf
from torch import nn

from src.utils.bounds import PositiveInt
from src.utils.config import check_types
from src.utils.errors import UserError


class Typed:
    """A constructor with one parameter of each kind of hint."""

    def __init__(
        self,
        mode: Literal["crf", "softmax"] = "crf",
        shape: tuple[int, int, int] = (1, 28, 28),
        widths: tuple[int, ...] = (8,),
        sizes: Sequence[float] = (1.0,),
        anything: typing.Sequence = (),
        size: PositiveInt = 1,
        either: int | str = 1,
        net: nn.Module | None = None,
    ) -> None:
        pass


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("mode", "hmm", "one of 'crf', 'softmax'"),
        ("shape", [1, 2], "a list of 3 ints"),
        ("widths", ["a"], "a list of ints"),
        ("sizes", ["x", 1.0], "a list of floats"),
        ("anything", 5, "a list"),
        ("size", "big", "an int"),
        ("either", [1], "an int or a string"),
        ("net", 3, "Module"),
    ],
)
def test_the_type_a_parameter_expects_is_named(key: str, value: object, expected: str) -> None:
    node = OmegaConf.create({"_target_": f"{__name__}.Typed", key: value})
    with pytest.raises(UserError) as err:
        check_types(node, "x")
    assert str(err.value).endswith(
        f"{__name__}.Typed expects {expected} there. Fix the override: x.{key}=<{expected}>."
    ), str(err.value)
