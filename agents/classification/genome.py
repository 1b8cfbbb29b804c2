"""Extension genomes of SMART's growth: the gene space, the encoding, and its variation operators.

A genome says what to add to a frozen library of modules for a new task: per library layer, how
many new trainable modules go in parallel to the frozen ones and of which type (conv or
res_fire), and which new layers (conv, res_fire or dim_reduce) are stacked on top. The gene space
is bounded by the library's shapes (:class:`GeneRanges`), so every genome reads as what gets built.

Operators: the initial genome adds exactly one module; SMART's mutation changes a scalar gene
``v`` with range ``{lo..hi}``, with probability ``rate``, to ``v' = int(0.8·v + 0.2·u)``,
``u ~ U{lo..hi}``, and flips a bit gene (layer type) with probability ``rate``; :func:`repair`
makes a genome legal; one-point :func:`crossover` is an option beyond SMART, which only mutates.
Pure Python + numpy; every random choice goes through one ``numpy.random.Generator``, so the
same seed gives the same genomes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

Rounding = Literal["floor", "stochastic"]

# --- named constants (all overridable where they are used) -----------------------------------------

SCALAR_KEEP = 0.8
"""Weight of the old value in SMART's scalar mutation ``v' = int(KEEP·v + (1 − KEEP)·u)``."""

ROUNDING_TOLERANCE = 1e-9
"""Added before flooring so float error cannot turn an exact integer (e.g. 0.8·2 + 0.2·2) into k − 1."""

P_NEW_LAYER = 0.5
"""When one module must be added to a non-empty library: chance it is a new layer on top rather
than an extra module in parallel to an existing layer (initial genome and repair)."""

P_REDUCE = 0.5
"""Chance that a freshly drawn new layer is a dimension-reduction layer."""

P_RESIDUAL = 0.5
"""Chance that a freshly drawn conv-or-res_fire choice is res_fire (where res_fire can be built)."""

EXTRA_KINDS = (("conv", "res_fire"), ("conv",), ("dim_reduce",))
"""What new modules beside one library layer can be: conv or res_fire (the residual bit picks),
conv only, or dim_reduce only (beside a layer that halves H and W)."""


# --- genomes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneRanges:
    """The gene space: inclusive bounds of every scalar gene, and the kinds the library's shapes
    let a gene build. The caller, who knows those shapes, sets the last four; their defaults
    leave every kind open.

    ``max_new_reductions`` (extension beyond SMART) caps how many of the new layers may be
    dimension reductions, because each one halves H and W and a 28×28 input survives only a few;
    ``None`` means no cap. ``extra_kinds[i]``: what new modules beside library layer i can be,
    one of :data:`EXTRA_KINDS` (``None``: conv or res_fire beside every layer). A res_fire new
    layer needs at least ``min_fire_channels`` input channels; ``top_channels`` is what the
    library outputs (``None``: unknown, taken to be enough).
    """

    max_extra_modules: int = 2
    max_new_layers: int = 3
    min_filters: int = 8
    max_filters: int = 32
    max_new_reductions: int | None = None
    extra_kinds: tuple[tuple[str, ...], ...] | None = None
    top_channels: int | None = None
    min_fire_channels: int = 1

    def __post_init__(self) -> None:
        if self.max_extra_modules < 0 or self.max_new_layers < 0:
            raise ValueError(f"gene ranges must be non-negative: {self}")
        if not 1 <= self.min_filters <= self.max_filters:
            raise ValueError(f"need 1 <= min_filters <= max_filters: {self}")
        if self.max_new_reductions is not None and self.max_new_reductions < 0:
            raise ValueError(f"max_new_reductions must be None or >= 0: {self}")
        if self.extra_kinds is not None and any(kinds not in EXTRA_KINDS for kinds in self.extra_kinds):
            raise ValueError(f"extra_kinds must each be one of {EXTRA_KINDS}: {self}")
        if min(self.top_channels or 1, self.min_fire_channels) < 1:
            raise ValueError(f"top_channels and min_fire_channels must be >= 1: {self}")

    def residual_beside(self, layer: int) -> bool:
        """Whether new modules beside library layer ``layer`` can be res_fire."""
        return self.extra_kinds is None or "res_fire" in self.extra_kinds[layer]

    def extra_kind(self, layer: int, residual: bool) -> str:
        """The kind of the new modules beside library layer ``layer``, as its residual bit picks it."""
        kinds = EXTRA_KINDS[0] if self.extra_kinds is None else self.extra_kinds[layer]
        return kinds[int(residual)]

    def fire_fits(self, channels: int | None) -> bool:
        """Whether a res_fire new layer can read ``channels`` channels (``None``: unknown)."""
        return channels is None or channels >= self.min_fire_channels


DEFAULT_RANGES = GeneRanges()


@dataclass(frozen=True)
class LayerGene:
    """One new layer appended on top of the library (below the task head).

    ``reduce``: a dimension-reduction layer (halves H and W) rather than a same-size layer.
    ``residual``: res_fire (residual Fire module) rather than a plain 3×3 conv; ignored when reduce.
    ``filters``: output channels of a conv layer; res_fire and dim_reduce keep their input's
    channel count, so for them it is a latent gene (carried and mutated, not expressed).
    """

    reduce: bool
    residual: bool
    filters: int

    @property
    def kind(self) -> str:
        """The module kind this gene builds: ``conv``, ``res_fire`` or ``dim_reduce``."""
        if self.reduce:
            return "dim_reduce"
        return "res_fire" if self.residual else "conv"

    def phenotype(self) -> tuple[str, int | None]:
        """What gets built, latent genes dropped: (kind, filters for conv else None)."""
        return (self.kind, self.filters if self.kind == "conv" else None)

    def describe(self) -> str:
        return f"conv({self.filters})" if self.kind == "conv" else self.kind


@dataclass(frozen=True)
class Genome:
    """What to add on top of a frozen library of ``len(extra_modules)`` layers for a new task.

    ``extra_modules[i]``: how many new trainable modules to add in parallel to the frozen ones of
    library layer i. ``extra_residual[i]``: whether those are res_fire (else conv); latent when
    ``extra_modules[i] == 0``. ``new_layers``: new layers stacked on top, bottom first.
    """

    extra_modules: tuple[int, ...] = ()
    extra_residual: tuple[bool, ...] = ()
    new_layers: tuple[LayerGene, ...] = ()

    def __post_init__(self) -> None:
        if len(self.extra_modules) != len(self.extra_residual):
            raise ValueError(
                f"extra_modules ({len(self.extra_modules)}) and extra_residual "
                f"({len(self.extra_residual)}) must have one entry per library layer"
            )

    @property
    def n_library_layers(self) -> int:
        return len(self.extra_modules)

    @property
    def new_module_count(self) -> int:
        """How many new trainable modules this genome adds."""
        return sum(self.extra_modules) + len(self.new_layers)

    def phenotype(self) -> tuple[Any, ...]:
        """What gets built, latent genes dropped; two genomes with equal phenotypes train alike."""
        existing = tuple(
            (count, residual if count else None)
            for count, residual in zip(self.extra_modules, self.extra_residual, strict=True)
        )
        return (existing, tuple(gene.phenotype() for gene in self.new_layers))

    def describe(self, ranges: GeneRanges = DEFAULT_RANGES) -> str:
        """Short human text, e.g. ``+1 conv@L0, +dim_reduce, +conv(16)``; ``ranges`` says what the
        library's layers take (:meth:`GeneRanges.extra_kind`)."""
        parts = [
            f"+{count} {ranges.extra_kind(layer, residual)}@L{layer}"
            for layer, (count, residual) in enumerate(
                zip(self.extra_modules, self.extra_residual, strict=True)
            )
            if count
        ]
        parts += [f"+{gene.describe()}" for gene in self.new_layers]
        return ", ".join(parts) if parts else "nothing"

    def validate(self, ranges: GeneRanges) -> None:
        """Raise ValueError if any gene lies outside ``ranges`` (a kind it cannot build included)
        or the genome adds nothing."""
        problems = []
        if ranges.extra_kinds is not None and len(ranges.extra_kinds) != self.n_library_layers:
            problems.append(
                f"ranges for {len(ranges.extra_kinds)} library layers, not {self.n_library_layers}"
            )
        elif any(bit and not ranges.residual_beside(i) for i, bit in enumerate(self.extra_residual)):
            problems.append("res_fire beside a library layer that cannot take one")
        inputs = _input_channels(self.new_layers, ranges.top_channels)
        if any(
            gene.kind == "res_fire" and not ranges.fire_fits(channels)
            for gene, channels in zip(self.new_layers, inputs, strict=False)
        ):
            problems.append(f"res_fire on fewer than {ranges.min_fire_channels} channels")
        if any(not 0 <= count <= ranges.max_extra_modules for count in self.extra_modules):
            problems.append(f"extra_modules {self.extra_modules} outside 0..{ranges.max_extra_modules}")
        if len(self.new_layers) > ranges.max_new_layers:
            problems.append(f"{len(self.new_layers)} new layers > {ranges.max_new_layers}")
        if any(not ranges.min_filters <= gene.filters <= ranges.max_filters for gene in self.new_layers):
            problems.append(f"filters outside {ranges.min_filters}..{ranges.max_filters}")
        reductions = sum(gene.reduce for gene in self.new_layers)
        if ranges.max_new_reductions is not None and reductions > ranges.max_new_reductions:
            problems.append(f"{reductions} dimension reductions > {ranges.max_new_reductions}")
        if self.new_module_count == 0:
            problems.append("adds no module")
        if problems:
            raise ValueError(f"invalid genome {self.describe()!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists, ints, bools)."""
        return {
            "extra_modules": list(self.extra_modules),
            "extra_residual": list(self.extra_residual),
            "new_layers": [
                {"reduce": gene.reduce, "residual": gene.residual, "filters": gene.filters}
                for gene in self.new_layers
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genome:
        try:
            return cls(
                extra_modules=tuple(int(count) for count in data["extra_modules"]),
                extra_residual=tuple(bool(bit) for bit in data["extra_residual"]),
                new_layers=tuple(
                    LayerGene(
                        reduce=bool(gene["reduce"]),
                        residual=bool(gene["residual"]),
                        filters=int(gene["filters"]),
                    )
                    for gene in data["new_layers"]
                ),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a genome record: {data!r} ({error})") from error

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Genome:
        return cls.from_dict(json.loads(text))


def _input_channels(layers: Sequence[LayerGene], top: int | None) -> list[int | None]:
    """Channels into each new layer, then out of the last, given the library's output ``top``
    (``None``: unknown). A conv layer sets its filters; res_fire and dim_reduce keep the count."""
    channels = [top]
    for gene in layers:
        channels.append(gene.filters if gene.kind == "conv" else channels[-1])
    return channels


# --- operators --------------------------------------------------------------------------------------


def random_layer_gene(
    ranges: GeneRanges,
    rng: np.random.Generator,
    *,
    p_reduce: float = P_REDUCE,
    p_residual: float = P_RESIDUAL,
) -> LayerGene:
    """A fresh new layer: each bit a coin with the given bias, filters uniform in range."""
    return LayerGene(
        reduce=bool(rng.random() < p_reduce),
        residual=bool(rng.random() < p_residual),
        filters=int(rng.integers(ranges.min_filters, ranges.max_filters + 1)),
    )


def _add_one_module(
    genome: Genome, ranges: GeneRanges, rng: np.random.Generator, *, p_new_layer: float = P_NEW_LAYER
) -> Genome:
    """Add exactly one module, the way a search starts.

    Empty library: a new conv layer (the first task starts from one conv module and grows).
    Otherwise, with chance ``p_new_layer``, a new same-size layer on top (conv or res_fire; a
    dimension reduction alone adds little capacity), else one extra module, conv or res_fire, in
    parallel to a uniformly chosen library layer. Choices the ranges forbid are skipped, and
    res_fire is drawn only where it can be built.
    """
    n = genome.n_library_layers
    layer_room = len(genome.new_layers) < ranges.max_new_layers
    extra_room = [i for i in range(n) if genome.extra_modules[i] < ranges.max_extra_modules]
    if not layer_room and not extra_room:
        raise ValueError(f"no room to add a module to {genome.describe()!r} within {ranges}")
    if n == 0:
        if not layer_room:
            raise ValueError(f"an empty library needs max_new_layers >= 1, got {ranges}")
        new = LayerGene(
            reduce=False, residual=False, filters=_uniform(ranges.min_filters, ranges.max_filters, rng)
        )
        return replace(genome, new_layers=(*genome.new_layers, new))
    as_layer = layer_room and (not extra_room or rng.random() < p_new_layer)
    if as_layer:
        top = _input_channels(genome.new_layers, ranges.top_channels)[-1]
        new = LayerGene(
            reduce=False,
            residual=bool(rng.random() < P_RESIDUAL) and ranges.fire_fits(top),
            filters=_uniform(ranges.min_filters, ranges.max_filters, rng),
        )
        return replace(genome, new_layers=(*genome.new_layers, new))
    layer = extra_room[int(rng.integers(len(extra_room)))]
    counts = list(genome.extra_modules)
    residual = list(genome.extra_residual)
    counts[layer] += 1
    if genome.extra_modules[layer] == 0:  # the type bit was latent: draw it afresh
        residual[layer] = bool(rng.random() < P_RESIDUAL) and ranges.residual_beside(layer)
    return replace(genome, extra_modules=tuple(counts), extra_residual=tuple(residual))


def initial_genome(n_library_layers: int, ranges: GeneRanges, rng: np.random.Generator) -> Genome:
    """The search's starting point: exactly one new module (see :func:`_add_one_module` for where)."""
    if n_library_layers < 0:
        raise ValueError(f"n_library_layers must be >= 0, got {n_library_layers}")
    empty = Genome((0,) * n_library_layers, (False,) * n_library_layers, ())
    return _add_one_module(empty, ranges, rng)


def _uniform(low: int, high: int, rng: np.random.Generator) -> int:
    """An integer uniform in {low..high} (either order)."""
    low, high = min(low, high), max(low, high)
    return int(rng.integers(low, high + 1))


def mutate_scalar(
    value: int,
    low: int,
    high: int,
    rng: np.random.Generator,
    *,
    keep: float = SCALAR_KEEP,
    rounding: Rounding = "floor",
) -> int:
    """SMART's scalar mutation: ``v' = int(keep·v + (1 − keep)·u)``, ``u ~ U{low..high}``.

    A blend toward a uniform draw, so big jumps are rare. ``rounding="floor"`` is the paper's
    ``int``; it never raises a small-range gene (0 stays 0 when ``(1 − keep)·high < 1``).
    ``rounding="stochastic"`` rounds up with probability equal to the fraction, which makes
    ``E[v'] = keep·v + (1 − keep)·E[u]`` exactly and lets small counts grow.
    """
    u = int(rng.integers(low, high + 1))
    blended = keep * value + (1.0 - keep) * u
    if rounding == "floor":
        result = math.floor(blended + ROUNDING_TOLERANCE)
    elif rounding == "stochastic":
        whole = math.floor(blended + ROUNDING_TOLERANCE)
        fraction = max(0.0, blended - whole)
        result = whole + int(rng.random() < fraction)
    else:
        raise ValueError(f"unknown rounding {rounding!r}; choose 'floor' or 'stochastic'")
    return min(high, max(low, result))


def repair(genome: Genome, ranges: GeneRanges, rng: np.random.Generator) -> Genome:
    """Make ``genome`` legal without changing what is legal already.

    1. Too many dimension reductions (``ranges.max_new_reductions``): the topmost excess reduce
       bits are cleared (those layers become same-size layers of their residual type).
    2. res_fire where the library's shapes cannot take it: the residual bit is cleared (beside a
       library layer; a new layer, bottom-up, becomes a conv layer of its filters).
    3. A genome that adds nothing is self-organization, which has already failed for this task:
       add one module by the initial-genome rule (:func:`_add_one_module`).
    """
    layers = list(genome.new_layers)
    if ranges.max_new_reductions is not None:
        excess = sum(gene.reduce for gene in layers) - ranges.max_new_reductions
        for position in reversed(range(len(layers))):
            if excess <= 0:
                break
            if layers[position].reduce:
                layers[position] = replace(layers[position], reduce=False)
                excess -= 1
    for position, gene in enumerate(layers):
        below = _input_channels(layers[:position], ranges.top_channels)[-1]
        if gene.kind == "res_fire" and not ranges.fire_fits(below):
            layers[position] = replace(gene, residual=False)
    residual = tuple(bit and ranges.residual_beside(i) for i, bit in enumerate(genome.extra_residual))
    genome = replace(genome, extra_residual=residual, new_layers=tuple(layers))
    if genome.new_module_count == 0:
        genome = _add_one_module(genome, ranges, rng)
    return genome


def mutate(
    genome: Genome,
    ranges: GeneRanges,
    rate: float,
    rng: np.random.Generator,
    *,
    keep: float = SCALAR_KEEP,
    rounding: Rounding = "floor",
) -> Genome:
    """SMART's mutation, then :func:`repair`; the result always lies within ``ranges``.

    Each scalar gene (every ``extra_modules`` entry, every ``filters``, the number of new layers)
    mutates with probability ``rate`` by :func:`mutate_scalar`; each bit (``extra_residual``,
    ``reduce``, ``residual``) flips with probability ``rate``. Order: library layers bottom-up,
    then new layers bottom-up, then the layer count — a grown count appends fresh random layers
    (:func:`random_layer_gene`), a shrunk count drops layers from the top.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"mutation rate must be in [0, 1], got {rate}")

    def hit() -> bool:
        return bool(rng.random() < rate)

    def scalar(value: int, low: int, high: int) -> int:
        return mutate_scalar(value, low, high, rng, keep=keep, rounding=rounding) if hit() else value

    counts, residual = [], []
    for count, bit in zip(genome.extra_modules, genome.extra_residual, strict=True):
        counts.append(scalar(count, 0, ranges.max_extra_modules))
        residual.append(bit != hit())
    layers = [
        LayerGene(
            reduce=gene.reduce != hit(),
            residual=gene.residual != hit(),
            filters=scalar(gene.filters, ranges.min_filters, ranges.max_filters),
        )
        for gene in genome.new_layers
    ]
    n_layers = scalar(len(layers), 0, ranges.max_new_layers)
    layers = layers[:n_layers]
    while len(layers) < n_layers:
        layers.append(random_layer_gene(ranges, rng))
    child = Genome(tuple(counts), tuple(residual), tuple(layers))
    return repair(child, ranges, rng)


def crossover(a: Genome, b: Genome, rng: np.random.Generator, *, ranges: GeneRanges | None = None) -> Genome:
    """One-point crossover of two parents over the same library.

    The per-layer genes form one sequence, library layers bottom-up then new layers bottom-up.
    Bits (``extra_residual``; ``reduce``, ``residual``) come from ``a`` before a random cut and
    from ``b`` after it (from the other parent where the chosen one has no layer there); each
    scalar (``extra_modules`` entries, ``filters`` where both parents have the layer, the number of
    new layers) is drawn uniformly between the parents' values, inclusive. So the child lies within
    any ranges both parents satisfy — except possibly the reduction cap, which is enforced when
    ``ranges`` is given. If the child adds nothing, one uniformly chosen scalar gene on which a
    parent adds something is raised to that parent's value.
    """
    if a.n_library_layers != b.n_library_layers:
        raise ValueError(f"parents differ in library depth: {a.n_library_layers} vs {b.n_library_layers}")
    n = a.n_library_layers
    longest = max(len(a.new_layers), len(b.new_layers))
    length = n + longest
    cut = int(rng.integers(1, length)) if length >= 2 else int(rng.integers(0, length + 1))

    def bit_parent(position: int) -> tuple[Genome, Genome]:
        return (a, b) if position < cut else (b, a)

    counts, residual = [], []
    for i in range(n):
        first, _ = bit_parent(i)
        counts.append(_uniform(a.extra_modules[i], b.extra_modules[i], rng))
        residual.append(first.extra_residual[i])
    layers = []
    for j in range(longest):
        first, other = bit_parent(n + j)
        source = first if j < len(first.new_layers) else other
        gene = source.new_layers[j]
        if j < len(a.new_layers) and j < len(b.new_layers):
            gene = replace(gene, filters=_uniform(a.new_layers[j].filters, b.new_layers[j].filters, rng))
        layers.append(gene)
    n_layers = _uniform(len(a.new_layers), len(b.new_layers), rng)

    if sum(counts) + n_layers == 0:
        options = [i for i in range(n) if max(a.extra_modules[i], b.extra_modules[i]) > 0]
        if longest > 0:
            options.append(-1)  # -1: the new-layer count
        if not options:
            raise ValueError("crossover needs at least one parent that adds a module")
        choice = options[int(rng.integers(len(options)))]
        if choice == -1:
            n_layers = longest
        else:
            counts[choice] = max(a.extra_modules[choice], b.extra_modules[choice])
    child = Genome(tuple(counts), tuple(residual), tuple(layers[:n_layers]))
    return repair(child, ranges, rng) if ranges is not None else child
