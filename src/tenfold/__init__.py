"""tenfold: serve AI models at scale.

Public surface::

    from tenfold import Model, ItemError, Client

Subclass :class:`Model`, implement ``load`` and a batched ``predict``, then
``tenfold serve mymodule:MyModel``.
"""

from typing import Any

from tenfold.errors import ItemError, TenfoldError
from tenfold.model import Model

__all__ = ["Client", "ItemError", "Model", "TenfoldError", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``tenfold.Client`` needs httpx (the ``client`` extra): imported on first use only.
    if name == "Client":
        from tenfold.queue.client import Client

        return Client
    raise AttributeError(f"module 'tenfold' has no attribute {name!r}")
