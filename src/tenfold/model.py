"""The model API users subclass.

::

    from tenfold import Model

    class Upper(Model[str, str]):
        name = "upper"
        version = "1"

        def load(self) -> None:          # once per worker process
            self.suffix = "!"

        def predict(self, batch: list[str]) -> list[str]:   # batched
            return [s.upper() + self.suffix for s in batch]

``input_model`` (any type pydantic can validate: ``str``, ``list[float]``, a
``BaseModel``) validates each input in the API process, so a bad input gets a
422 that names the field and never reaches a worker. ``item_size`` lets the
batcher group inputs of similar size (length-aware batching). ``predict`` may
return :class:`tenfold.ItemError` in place of one output to fail that item
alone; if ``predict`` raises, tenfold bisects the batch to find the failing
item(s) and fails only them.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

EXAMPLES: dict[str, str] = {
    "embed": "tenfold.examples.embed:Embed",
    "classify": "tenfold.examples.classify:Classify",
}


class Model(Generic[In, Out]):
    """Base class of a servable model. Subclasses set ``name`` and implement ``predict``."""

    name: ClassVar[str] = ""
    #: Part of every cache key; an instance may refine it (e.g. ``"1+onnx-int8"``).
    version: str = "1"
    #: Type each input is validated against (pydantic); ``None`` accepts any JSON value.
    input_model: ClassVar[Any] = None
    #: An embed stage: each output is one vector. The server then caches outputs per item
    #: in the embedding cache (float32, by item id or content hash, 24 h), looks a whole
    #: request up in one round trip and sends only the misses to the model.
    embeds: ClassVar[bool] = False
    #: Per-model batching defaults; the server config overrides them.
    max_batch_size: ClassVar[int | None] = None
    batch_timeout_ms: ClassVar[float | None] = None

    def __init__(self, **options: Any) -> None:
        """``options`` come from the config (``[models.NAME.options]``) or a variant's
        ``variant.json``; the instance is built in the API process (no weights) and in
        each worker process, where ``load`` follows."""
        self.options = options

    def load(self) -> None:
        """Load weights. Called once in each worker process before the first batch."""

    def predict(self, batch: list[In]) -> list[Out]:
        """Return one output per input, in order."""
        raise NotImplementedError

    def item_size(self, item: In) -> int | None:
        """Cost of one input (e.g. its token count) for length-aware batching, or ``None``.

        Runs in the API process on every request: keep it cheap and do not rely on ``load``.
        """
        return None


def resolve_target(target: str) -> str:
    """Map ``embed``/``classify`` to the bundled examples; leave ``module:Class`` as is."""
    if target in EXAMPLES:
        return EXAMPLES[target]
    if ":" not in target:
        raise ValueError(
            f"model target {target!r} must be MODULE:CLASS (e.g. mypkg.models:Embedder) "
            f"or one of the examples: {', '.join(sorted(EXAMPLES))}"
        )
    return target


def load_model_class(target: str) -> type[Model[Any, Any]]:
    """Import ``module:Class`` and check it is a :class:`Model` subclass."""
    module_name, _, attr = resolve_target(target).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    try:
        cls = getattr(module, attr)
    except AttributeError as exc:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ValueError(f"{target!r} is not a subclass of tenfold.Model")
    if not cls.name:
        raise ValueError(f"{target!r} must set the class attribute `name`")
    return cls
