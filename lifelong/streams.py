"""Streams: the task sequences a continual learner is judged on.

A stream is a list of task specs in learning order. A ``|`` splits it into the tasks that build
the library and the tasks the results are judged on (``mnist:0v1 mnist:2v3 | mnist:6v8@20pc``);
without one, every task after the first is judged (the first meets an empty library whatever
the condition). Named presets give the standard streams, among them CTrL's (Veniat et al.,
ICLR 2021): ``s-minus`` (a task, distractors, the same task again with a tenth of the data),
``s-plus`` (the reverse), ``s-in`` (the same task on transformed inputs), ``s-out`` (the same
inputs with permuted labels), ``s-long`` (30 tasks mixing all of these) and ``s-long100``
(CTrL's S_long recipe at its full length: 100 five-way tasks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.task import TaskSpec
from lifelong.errors import TaskSpecError
from lifelong.tasks import parse_spec

SPLIT = "|"
DISTRACTORS = "fashion:0v6@500pc fashion:2v4@500pc mnist:1v7@500pc"


@dataclass(frozen=True)
class Stream:
    """Tasks in learning order; results are judged on ``specs[judged_from:]``."""

    name: str
    specs: tuple[TaskSpec, ...]
    judged_from: int

    @property
    def judged(self) -> tuple[TaskSpec, ...]:
        return self.specs[self.judged_from :]

    @property
    def text(self) -> str:
        texts = [spec.text for spec in self.specs]
        return " ".join([*texts[: self.judged_from], SPLIT, *texts[self.judged_from :]])


def _s_long(seed: int = 0, length: int = 30) -> str:
    """30 tasks mixing CTrL's patterns: new pairs, pairs met before at another size, inverted
    inputs, permuted labels; training sizes drawn from full / 500 / 50 / 10 per class."""
    rng = np.random.default_rng(seed)
    sizes = ("", "@500pc", "@50pc", "@10pc")
    texts: list[str] = []
    while len(texts) < length:
        if texts and rng.random() < 0.3:  # an earlier task again: another size or a transform
            base = texts[rng.integers(len(texts))].split("@")[0].split("~")[0]
            twist = ("", "~invert", "~rot90", "~labels=3")[rng.integers(4)]  # labels=3 swaps a pair
        else:
            data = ("mnist", "fashion")[rng.integers(2)]
            first, second = sorted(rng.choice(10, 2, replace=False).tolist())
            base, twist = f"{data}:{first}v{second}", ""
        text = f"{base}{sizes[rng.integers(len(sizes))]}{twist}"
        if text not in texts:
            texts.append(text)
    return " ".join(texts)


# S_long's stand-ins for CTrL's six data sets: both data sets, plain and under each image transform
# (a label permutation is no new data set here: a task's classes already come in random order)
S_LONG_SOURCES = tuple(
    (data, twist) for data in ("mnist", "fashion") for twist in ("", "~invert", "~rot90", "~permute=1")
)
S_LONG_LARGE, S_LONG_SMALL = "@1000pc", "@5pc"  # CTrL's per-class training sizes


def _s_long100(seed: int = 0, length: int = 100) -> str:
    """CTrL's S_long (Veniat et al. 2021): five-way tasks, each on a data set drawn uniformly
    from :data:`S_LONG_SOURCES` and five of its classes in random order. Training sizes per class:
    in the first third, half the tasks have 1,000 and half 5; in the middle third a quarter have
    1,000; in the last third all have 5. (Validation images come from the training pool by this
    project's one rule, the same for every task size, not CTrL's 500 or 3 per class.)"""
    rng = np.random.default_rng(seed)
    thirds = (length // 3, length // 3, length - 2 * (length // 3))
    sizes: list[str] = []
    for count, large_share in zip(thirds, (1 / 2, 1 / 4, 0), strict=True):
        large = round(count * large_share)
        third = [S_LONG_LARGE] * large + [S_LONG_SMALL] * (count - large)
        sizes += [third[i] for i in rng.permutation(count)]
    texts: list[str] = []
    for size in sizes:
        while True:
            data, twist = S_LONG_SOURCES[rng.integers(len(S_LONG_SOURCES))]
            classes = ",".join(str(c) for c in rng.choice(10, 5, replace=False).tolist())
            text = f"{data}:{classes}{size}{twist}"
            if text not in texts:
                break
        texts.append(text)
    return " ".join(texts)


PRESETS: dict[str, str] = {
    "split-mnist": "mnist:0v1 mnist:2v3 mnist:4v5 mnist:6v7 mnist:8v9",
    "split-fashion": "fashion:0v1 fashion:2v3 fashion:4v5 fashion:6v7 fashion:8v9",
    # SMART's protocol: five seen binary pairs, then unseen pairs
    "pairs": (
        "mnist:1v3 mnist:1v2 mnist:3v4 mnist:4v5 mnist:0v9 | "
        "mnist:6v7 mnist:2v8 mnist:5v9 mnist:0v6 mnist:7v8"
    ),
    # the seen classes as one task at full data, then unseen pairs at 5, 20 and 100 per class
    "few-shot": (
        "mnist:0-5 | mnist:6v8@5pc mnist:6v8@20pc mnist:6v8@100pc "
        "mnist:7v9@5pc mnist:7v9@20pc mnist:7v9@100pc"
    ),
    # the main job (`lifelong demo`): multi-class MNIST and Fashion-MNIST tasks grow the library,
    # then unseen classes, at full size and few-shot
    "demo": "mnist:0-5 fashion:0-5 | mnist:6v8 mnist:7v9@20pc fashion:6v8@20pc fashion:7v9",
    "cross-domain": "fashion | mnist",
    "cross-domain-reverse": "mnist | fashion",
    "s-minus": f"mnist:3v8@500pc {DISTRACTORS} | mnist:3v8@50pc",
    "s-plus": f"mnist:3v8@50pc {DISTRACTORS} | mnist:3v8@500pc",
    "s-in": f"mnist:3v8@500pc {DISTRACTORS} | mnist:3v8@500pc~invert",
    # labels=1 moves every one of the five classes (no fixed point)
    "s-out": f"mnist:0-4@100pc {DISTRACTORS} | mnist:0-4@100pc~labels=1",
    "s-long": _s_long(),
    "s-long100": _s_long100(),
}


def parse_stream(text: str) -> Stream:
    """A preset's name, or task specs separated by spaces with at most one ``|``."""
    name = text.strip()
    body = PRESETS.get(name, name)
    parts = body.split(SPLIT)
    if len(parts) > 2:
        raise TaskSpecError(f"bad stream {text!r}: at most one '{SPLIT}' (building tasks | judged tasks)")
    groups = [part.split() for part in parts]
    if not any(groups):
        known = ", ".join(PRESETS)
        raise TaskSpecError(f"empty stream {text!r}: give task specs or a preset ({known})")
    if len(groups) == 2 and not all(groups):
        side = "before" if not groups[0] else "after"
        raise TaskSpecError(f"bad stream {text!r}: no tasks {side} '{SPLIT}'")
    specs = tuple(parse_spec(spec) for group in groups for spec in group)
    twice = next((s.text for i, s in enumerate(specs) if s.text in [t.text for t in specs[:i]]), None)
    if twice is not None:
        raise TaskSpecError(
            f"bad stream {text!r}: task {twice!r} comes twice (give it another size or transform)"
        )
    atari = next((s.text for s in specs if s.family != "classification"), None)
    if atari is not None:
        raise TaskSpecError(f"bad stream {text!r}: {atari!r} is not an image task (streams are image tasks)")
    if len(specs) < 2:
        raise TaskSpecError(f"bad stream {text!r}: a stream needs at least 2 tasks")
    judged_from = len(groups[0]) if len(groups) == 2 else 1
    return Stream(name if name in PRESETS else "custom", specs, judged_from)
