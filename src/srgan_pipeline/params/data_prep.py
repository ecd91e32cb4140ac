"""The ``data_prep`` parameter block (conf/base/parameters_data_prep.yml): sources, tiles,
limits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, model_validator

from srgan_pipeline.names import SOURCE_KINDS
from srgan_pipeline.params.rules import (
    Params,
    PositiveFloat,
    PositiveInt,
    at_least_scale,
    builtin_names,
    hex_digest,
    inside_source,
    multiple_of_scale,
)


class TilesParams(Params):
    """Tiles must map to whole LR pixels, and overlap or touch (gaps would drop image content)."""

    size: Annotated[PositiveInt, AfterValidator(multiple_of_scale)]
    stride: Annotated[PositiveInt, AfterValidator(multiple_of_scale)]

    @model_validator(mode="after")
    def _no_gaps(self) -> TilesParams:
        if self.stride > self.size:
            raise ValueError(
                f"stride ({self.stride}) is larger than size ({self.size}): parts of every "
                "image would never be seen in training; use a stride <= size"
            )
        return self


class SourceParams(Params):
    """One source; its kind follows from the location it names (sources.py, docs/data.md)."""

    kind: Literal[SOURCE_KINDS] | None = None
    enabled: bool = True
    path: str | None = None
    url: str | None = None
    size: PositiveInt | None = None
    sha256: Annotated[str, hex_digest(64)] | None = None
    md5: Annotated[str, hex_digest(32)] | None = None
    images_in: Annotated[str, AfterValidator(inside_source)] | None = None
    builtin: Annotated[tuple[str, ...], BeforeValidator(builtin_names)] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _located(self) -> SourceParams:
        # A disabled source needs no location. "{param}" is replaced by this source's path.
        if not self.enabled:
            return self
        kind = self.kind or self.location_kind()
        if kind is None:
            raise ValueError(
                "this source has no location. Set {param}.path=<folder of images> or "
                "{param}.url=<archive URL> (for example with kedro run "
                '--params="{param}.path=/data/my_images"), or turn it off with '
                "{param}.enabled=false."
            )
        required = {"local": "path", "url": "url", "builtin": "builtin"}[kind]
        if not getattr(self, required):
            raise ValueError(f"kind is {kind!r} but {{param}}.{required} is not set")
        return self

    def location_kind(self) -> str | None:
        """The kind the location implies: a path wins over a url (no download needed)."""
        return "local" if self.path else "url" if self.url else "builtin" if self.builtin else None


Sources = dict[str, SourceParams] | None


class ArchiveLimitsParams(Params):
    """What one archive may extract to (archives.ArchiveLimits), refused before extracting."""

    max_members: PositiveInt
    max_bytes: PositiveInt
    max_ratio: PositiveFloat  # extracted bytes per byte of archive


class DataPrepParams(Params):
    raw_dir: str
    min_size: Annotated[PositiveInt, AfterValidator(at_least_scale)]
    max_pixels: PositiveInt  # checked from the header before an image is decoded
    show_progress: bool
    workers: PositiveInt | None  # null = every core this process may use
    tiles: TilesParams
    archive_limits: ArchiveLimitsParams
    train_sources: Sources
    eval_sets: Sources

    @model_validator(mode="after")
    def _sources_apart(self) -> DataPrepParams:
        enabled = [f"{{param}}.{group}.{name}" for group in ("train_sources", "eval_sets")
                   for name, source in (getattr(self, group) or {}).items() if source.enabled]
        if not enabled:
            raise ValueError("nothing to do: {param}.train_sources and {param}.eval_sets are "
                             "both empty or disabled; enable or add a source")
        problem = clashing_source_names(enabled)
        if problem:
            raise ValueError(problem)
        return self


def clashing_source_names(params: Iterable[str]) -> str | None:
    """Two sources of one name, ignoring letter case (macOS and Windows disks do), named by
    their parameter paths (``<...>.<group>.<name>``): a source's name keys its folders."""
    seen: dict[str, str] = {}
    for param in params:
        other = seen.setdefault(param.rpartition(".")[2].casefold(), param)
        if other != param:
            return (f"{other} and {param} have the same name (ignoring letter case), and a "
                    "source's name keys the folders its files go to: rename one of them")
    return None
