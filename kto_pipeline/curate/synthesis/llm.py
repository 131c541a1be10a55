"""The teacher as a distilabel LLM: importing distilabel quietly, a seeded TransformersLLM, build_llm.

distilabel is imported lazily (~2 s), only when an LLM is built or a pipeline runs.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from kto_pipeline.curate.synthesis.config import TeacherConfig

if TYPE_CHECKING:
    from distilabel.models.llms.base import LLM

__all__ = ["build_llm", "import_distilabel"]

# pydantic 2.14 warns about a `Field(default=None)` inside distilabel's RuntimeParameter alias,
# once per field while distilabel's classes are defined (hundreds of lines): not ours, harmless.
_PYDANTIC_NOISE = "The 'default' attribute with value None"


def import_distilabel() -> None:
    """Import distilabel (lazily: ~2 s) without its pydantic warnings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PYDANTIC_NOISE)
        # distilabel.pipeline imports its own deprecated `distilabel.llms` alias.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"distilabel\.")
        import distilabel.distiset  # noqa: F401
        import distilabel.models.llms  # noqa: F401
        import distilabel.pipeline  # noqa: F401
        import distilabel.steps  # noqa: F401
        import distilabel.steps.tasks  # noqa: F401


_SEEDED_CLASS: type | None = None


def _seeded_transformers_llm_class() -> type:
    """`TransformersLLM` + a seed (set after loading, in the worker), a torch thread count and
    quiet transformers logs.

    TransformersLLM has no seed, and its worker process starts from whatever torch RNG state
    it forked with. Built lazily (importing distilabel costs ~2 s) but published as a module
    attribute, because the pool pickles the step and its LLM by reference.
    """
    global _SEEDED_CLASS
    if _SEEDED_CLASS is not None:
        return _SEEDED_CLASS
    import_distilabel()
    from distilabel.models.llms import TransformersLLM

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PYDANTIC_NOISE)  # the subclass re-checks them

        class SeededTransformersLLM(TransformersLLM):
            seed: int | None = None
            quiet: bool = True
            num_threads: int | None = None

            def load(self) -> None:
                if self.num_threads is not None:
                    import torch

                    torch.set_num_threads(self.num_threads)
                if self.quiet:
                    # Runs in the step's worker process, which ends with the pipeline: silences
                    # the weight-loading progress bar and the torch_dtype deprecation warning.
                    from transformers.utils import logging as hf_logging

                    hf_logging.set_verbosity_error()
                    hf_logging.disable_progress_bar()
                super().load()
                if self.seed is not None:
                    from transformers import set_seed

                    set_seed(self.seed)

    # Pickle looks the class up as `<__module__>.<__qualname__>`: this module, whose
    # `__getattr__` below builds it on first access.
    SeededTransformersLLM.__module__ = __name__
    SeededTransformersLLM.__qualname__ = "SeededTransformersLLM"
    _SEEDED_CLASS = SeededTransformersLLM
    return SeededTransformersLLM


def __getattr__(name: str) -> Any:  # PEP 562: lets pickle find the lazily built class
    if name == "SeededTransformersLLM":
        return _seeded_transformers_llm_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_llm(teacher: TeacherConfig, *, quiet: bool = True) -> LLM:
    """A distilabel LLM for `teacher` (not loaded: distilabel loads it in the worker)."""
    if teacher.kind == "openai":
        import_distilabel()
        from distilabel.models.llms import OpenAILLM

        kwargs: dict[str, Any] = {}
        if teacher.base_url:
            kwargs["base_url"] = teacher.base_url
        return OpenAILLM(
            model=teacher.model,
            api_key=teacher.api_key or "EMPTY",
            timeout=teacher.timeout_s,
            max_retries=teacher.max_retries,
            generation_kwargs=teacher.generation_kwargs(),
            **kwargs,
        )
    cls = _seeded_transformers_llm_class()
    return cls(
        model=teacher.model,
        device=teacher.device,
        generation_kwargs=teacher.generation_kwargs(),
        seed=teacher.seed,
        quiet=quiet,
        num_threads=teacher.num_threads,
    )
