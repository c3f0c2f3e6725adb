"""Dynamic batching: pure policies (``policy``, ``latency``, ``length``)."""

from tenfold.batching.latency import LatencyModel
from tenfold.batching.policy import BatchConfig, Decision, Pending, admit, decide

__all__ = ["BatchConfig", "Decision", "LatencyModel", "Pending", "admit", "decide"]
