"""A model whose outputs JSON may not carry (imported by worker processes too)."""

from __future__ import annotations

from typing import Any, ClassVar

from tenfold import Model


class Outputs(Model[str, Any]):
    """Echoes text; ``complex`` gives a complex number (pickles, but is not JSON)."""

    name = "outputs"
    version = "1"
    input_model: ClassVar[Any] = str

    def predict(self, batch: list[str]) -> list[Any]:
        return [complex(1, 2) if s == "complex" else s for s in batch]
