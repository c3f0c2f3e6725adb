"""Distinct English-like sentences of 6-30 words, deterministic by seed.

Used by the benchmarks and as the default calibration set of ``embed``. No
download: a small vocabulary and grammar templates generate them.
"""

from __future__ import annotations

import random

_SUBJECTS = (
    "the engineer",
    "a small team",
    "our customer",
    "the new model",
    "every worker",
    "the scheduler",
    "a curious student",
    "the support agent",
    "my neighbour",
    "the data platform",
    "the night shift",
    "a startup in Berlin",
    "the research lab",
    "the mobile app",
    "the old server",
)
_VERBS = (
    "measured",
    "deployed",
    "rewrote",
    "explained",
    "cached",
    "monitored",
    "compared",
    "shipped",
    "debugged",
    "scaled",
    "ordered",
    "reviewed",
    "planned",
    "benchmarked",
    "translated",
)
_OBJECTS = (
    "the latency report",
    "a batch of requests",
    "the embedding index",
    "three new features",
    "the quarterly budget",
    "a recipe for bread",
    "the train timetable",
    "the weather forecast",
    "a long email",
    "the GPU cluster",
    "the music playlist",
    "a garden plan",
    "the sales figures",
    "the error logs",
    "a holiday itinerary",
)
_TAILS = (
    "before the meeting",
    "after lunch",
    "with surprising care",
    "for the second time this week",
    "because the queue kept growing",
    "while everyone else was asleep",
    "in under an hour",
    "without asking anyone",
    "so that costs would fall",
    "and nobody noticed the difference",
    "despite the noisy office",
    "using only open source tools",
    "on a rainy Tuesday afternoon",
    "to the delight of the whole department",
    "although the deadline had already passed",
)
_FILLER = (
    "quickly",
    "carefully",
    "quietly",
    "again",
    "finally",
    "really",
    "almost",
    "certainly",
    "probably",
    "together",
    "slowly",
    "happily",
    "early",
    "late",
    "twice",
)


def sentence(rng: random.Random, min_words: int = 6, max_words: int = 30) -> str:
    target = rng.randint(min_words, max_words)
    words = " ".join(
        (rng.choice(_SUBJECTS), rng.choice(_FILLER), rng.choice(_VERBS), rng.choice(_OBJECTS))
    ).split()
    while len(words) < target:
        words += rng.choice(_TAILS + _FILLER).split()
    return " ".join(words[:target]).capitalize() + "."


def sentences(n: int, seed: int = 0, min_words: int = 6, max_words: int = 30) -> list[str]:
    """``n`` distinct sentences in random order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        s = sentence(rng, min_words, max_words)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
