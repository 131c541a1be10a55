"""Dagster config classes built from the library's config dataclasses: one definition per setting.

Each setting's name, type, default and help text are declared once, on the library dataclass
(`field(default=..., metadata={"help": ...})`, as TRL's KTOConfig does); the run config a user
edits in the launchpad and the resource config both come from there, and `to_library()` turns
the Dagster object back into the dataclass the library takes. A default changed in the library
is the default in the UI, so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field, create_model


def _dagster_type(annotation: Any) -> Any:
    # Dagster config has lists, not tuples.
    origin = typing.get_origin(annotation)
    if origin is tuple:
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return list[args[0]] if args else list
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_dagster_type(a) for a in typing.get_args(annotation)))
    return annotation


def _dagster_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def library_fields(
    source: type, names: Sequence[str] | None = None, exclude: Sequence[str] = ()
) -> list[dataclasses.Field]:
    by_name = {f.name: f for f in dataclasses.fields(source)}
    unknown = [n for n in (*(names or ()), *exclude) if n not in by_name]
    if unknown:
        raise ValueError(f"{source.__name__} has no field {', '.join(unknown)}")
    chosen = [by_name[n] for n in names] if names is not None else list(by_name.values())
    return [f for f in chosen if f.name not in exclude]


def help_of(f: dataclasses.Field) -> str:
    text = f.metadata.get("help")
    if not text:
        raise ValueError(f"library config field {f.name!r} has no metadata['help']: document it where it is declared")
    return text


class LibraryConfig:
    """Mixin of the generated classes: the dataclass they mirror, and the way back to it."""

    library_class: typing.ClassVar[type]
    library_field_names: typing.ClassVar[tuple[str, ...]]

    def to_library(self, **values: Any) -> Any:
        """The library dataclass with this object's settings (plus `values` for fields it does not expose)."""
        hints = typing.get_type_hints(self.library_class)
        mine = {}
        for name in self.library_field_names:
            value = getattr(self, name)
            if isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
                value = tuple(value)
            mine[name] = value
        return self.library_class(**mine, **values)


def config_from(
    source: type,
    *,
    base: type = dg.Config,
    fields: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    name: str | None = None,
) -> type:
    """A `base` (dg.Config or dg.ConfigurableResource) subclass with `source`'s fields.

    `fields` picks and orders a subset (default: all), `exclude` leaves some out (those another
    resource supplies, such as the embedder's model name). Subclass the result to add fields or
    methods of the Dagster layer.
    """
    hints = typing.get_type_hints(source)
    specs: dict[str, Any] = {}
    chosen = library_fields(source, fields, exclude)
    for f in chosen:
        if f.default is not dataclasses.MISSING:
            default = Field(default=_dagster_default(f.default), description=help_of(f))
        elif f.default_factory is not dataclasses.MISSING:
            factory = f.default_factory
            default = Field(default_factory=lambda factory=factory: _dagster_default(factory()), description=help_of(f))
        else:
            default = Field(description=help_of(f))
        specs[f.name] = (_dagster_type(hints[f.name]), default)
    model = create_model(
        name or f"{source.__name__}Settings",
        __base__=(base, LibraryConfig),
        __module__=source.__module__,
        **specs,
    )
    model.library_class = source
    model.library_field_names = tuple(f.name for f in chosen)
    return model
