"""tenfold: serve AI models at scale.

Public surface::

    from tenfold import Model, ItemError

Subclass :class:`Model`, implement ``load`` and a batched ``predict``, then
``tenfold serve mymodule:MyModel``.
"""

from tenfold.errors import ItemError, TenfoldError
from tenfold.model import Model

__all__ = ["ItemError", "Model", "TenfoldError", "__version__"]
__version__ = "0.1.0"
