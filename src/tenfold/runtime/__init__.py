"""Running models: failure isolation, worker processes and the batching driver."""
