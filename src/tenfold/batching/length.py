"""Length-aware grouping: split a flush window into sub-batches of similar size.

A batch is padded to its longest input, so a 6-word sentence batched with a
30-word one costs as much as a 30-word one. Sorting the window by declared
size and cutting it where the padding waste of a group would pass a threshold
turns that padding back into throughput (see the serving benchmark).
"""

from __future__ import annotations

from collections.abc import Sequence


def padding_waste(sizes: Sequence[int]) -> float:
    """Share of a padded batch that is padding: ``1 - sum(sizes) / (n * max(sizes))``."""
    if not sizes:
        return 0.0
    top = max(max(sizes), 1)
    return 1.0 - sum(max(s, 1) for s in sizes) / (len(sizes) * top)


def group_by_size(
    keyed_sizes: Sequence[tuple[int, int]],
    *,
    waste_threshold: float,
    min_group: int,
) -> list[list[int]]:
    """Cut ``(key, size)`` pairs, sorted by size, into groups whose padding waste stays
    under ``waste_threshold``; groups hold at least ``min_group`` items where possible.
    Returns lists of keys; the whole window stays together when its waste is low."""
    if not keyed_sizes:
        return []
    if padding_waste([s for _, s in keyed_sizes]) <= waste_threshold:
        return [[k for k, _ in sorted(keyed_sizes, key=lambda ks: ks[1])]]
    groups: list[list[tuple[int, int]]] = [[]]
    for key, size in sorted(keyed_sizes, key=lambda ks: ks[1]):
        group = groups[-1]
        candidate = [s for _, s in group] + [size]
        if len(group) >= min_group and padding_waste(candidate) > waste_threshold:
            groups.append([(key, size)])
        else:
            group.append((key, size))
    if len(groups) > 1 and len(groups[-1]) < min_group:
        groups[-2].extend(groups.pop())
    return [[k for k, _ in g] for g in groups]
