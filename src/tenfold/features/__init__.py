"""Feature store: feature views declared in Python, served through the cache.

::

    from tenfold.features import FeatureStore, FeatureView

    users = FeatureView("users", entity_key="user_id", loader=load_users, ttl_s=3600)
    store = FeatureStore(stack.backend("features"), views=[users])
    rows = await store.get_many("users", ["u1", "u2"])
"""

from tenfold.features.store import FeatureStore, MaterializeReport
from tenfold.features.view import Features, FeatureView

__all__ = ["FeatureStore", "FeatureView", "Features", "MaterializeReport"]
