"""ESP (Enforced SubPopulations, Gomez & Miikkulainen): the search over networks, on stacked torch tensors.

ESP evolves a network (:mod:`agents.atari.network`: its format and forward) unit by unit: one
subpopulation per hidden neuron, one per recruited GRUSM source (whose genome is its transfer
weights), and one for the output biases; a network is one member of every subpopulation.

**Tensors.** A group of same-length subpopulations is one :class:`Subpopulations`: ``genes (P, M,
G)`` for P subpopulations × M members × G genes, with fitness accumulators ``(P, M)``. Assembling N
networks is index selection ``members (N, P) → (N, P, G)`` (:meth:`ESP.assemble`), and the forward
of all of them is a few batched matmuls (:class:`agents.atari.network.BatchedPolicy`). The GA runs
on the CPU with one ``torch.Generator`` (so a seed gives the same genomes on a CUDA machine); only
the policy forward runs on ``device``.

**One generation** (:meth:`ESP.ask` / :meth:`ESP.tell`): assemble networks from one member of
every subpopulation (each subpopulation is walked in random permutations, so members participate
equally often); every participant is credited with its network's score; a member's fitness is the
mean over its participations (never participating ranks last). Then per subpopulation: rank, each
top-quartile member mates (one-point crossover) with a higher-ranked one (the best with any of the
top quartile), two offspring per mating replace the bottom of the ranking, each offspring is
mutated with probability ``mutation_rate`` by Cauchy noise on ``mutated_genes`` random genes. The
top survives unchanged. After ``stagnation`` generations without a new best score, a *burst*
(δ-coding) re-seeds every subpopulation around the best network's gene in that position (Cauchy
noise); when that happens with ``bursts_before_adapt`` bursts in a row already behind it, the
network is adapted: lesion every unit (neuron or source) of the best network and remove those it
does not need, else add a recruit (a reserve source if one is left, else a neuron).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.atari.budget import MEMBERS, STAGNATION, TRANSFER_INITS
from agents.atari.games import N_OUTPUTS
from agents.atari.grusm import DEFAULT_INIT_SCALE, SILENT_SCALE, Source, transfer_genome_size
from agents.atari.network import Network, Networks, neuron_genome_size

SCORE_EPSILON = 0.0
"""A generation's best score must exceed the best so far by more than this to count as an
improvement (resets the stagnation counter). 0: any strict improvement."""


# --------------------------------------------------------------------------------------------------
# Subpopulations and the GA
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ESPConfig:
    """Every constant of ESP. Defaults follow Gomez's ESP where it states one."""

    members: int = MEMBERS
    """Members per subpopulation (M). With 100 evaluations per generation each member takes part in
    about 5 networks."""
    init_scale: float = DEFAULT_INIT_SCALE
    """Initial and newly added genes are uniform in ``[-init_scale, init_scale]``."""
    breed_fraction: float = 0.25
    """Top fraction of a ranked subpopulation that mates (ESP: the top quartile); each mating gives
    two offspring, which replace the bottom ``2 × breed`` members."""
    mutation_rate: float = 0.4
    """Probability that an offspring is mutated (ESP: 0.4)."""
    mutated_genes: int = 1
    """Randomly chosen genes (with replacement) that a mutated offspring changes (ESP: one)."""
    mutation_scale: float = 0.3
    """Scale of the Cauchy noise added by mutation (ESP: α = 0.3)."""
    burst_scale: float = 0.3
    """Scale of the Cauchy noise around the best network's genes when a burst re-seeds."""
    burst_keep_best: bool = True
    """A burst keeps member 0 of each subpopulation an exact copy of the best network's gene, so the
    best network can still be assembled."""
    stagnation: int = STAGNATION
    """Generations without a new best score before a burst (the paper's ``b``)."""
    bursts_before_adapt: int = 2
    """Bursts in a row without improvement after which the next stagnation also adapts the network
    (lesion, else add a recruit)."""
    lesion_tolerance: float = 0.0
    """A unit is removed when the best network without it scores at least ``baseline − tolerance``
    (in game-score units: set it per game)."""
    lesion_sources: bool = True
    """Lesioning also tests (and may drop) recruited sources, not only own neurons."""
    gene_clip: float = 1e3
    """Genes are clamped to ``±gene_clip`` after mutation and bursts: Cauchy tails can reach inf,
    and inf × a zero input is NaN."""

    def __post_init__(self) -> None:
        breed = self.n_breed
        if self.members < 4 or 3 * breed > self.members:
            raise ValueError(f"members={self.members} too small for breed_fraction={self.breed_fraction}")
        if not 0.0 <= self.mutation_rate <= 1.0:
            raise ValueError(f"mutation_rate must be in [0, 1], got {self.mutation_rate}")
        if self.mutated_genes < 1 or self.stagnation < 1 or self.bursts_before_adapt < 0:
            raise ValueError("mutated_genes and stagnation must be >= 1, bursts_before_adapt >= 0")
        if min(self.init_scale, self.mutation_scale, self.burst_scale, self.gene_clip) <= 0:
            raise ValueError("scales and gene_clip must be positive")

    @property
    def n_breed(self) -> int:
        """Parents per subpopulation (at least one)."""
        return max(1, int(self.members * self.breed_fraction))


def _uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * scale


def _cauchy(shape: tuple[int, ...], scale: float, generator: torch.Generator) -> Tensor:
    return torch.empty(shape).cauchy_(0.0, scale, generator=generator)


@dataclass(eq=False)
class Subpopulations:
    """P subpopulations of M members with G genes each, as one tensor, plus this generation's
    fitness accumulators (sum and count of the scores of the networks each member took part in)."""

    genes: Tensor  # (P, M, G) float32
    fitness_sum: Tensor = field(default=None)  # type: ignore[assignment]  # (P, M) float64
    fitness_count: Tensor = field(default=None)  # type: ignore[assignment]  # (P, M) int64

    def __post_init__(self) -> None:
        if self.genes.ndim != 3:
            raise ValueError(f"genes must be (P, M, G), got {tuple(self.genes.shape)}")
        if self.fitness_sum is None or self.fitness_count is None:
            self.reset_fitness()

    @classmethod
    def random(cls, p: int, m: int, g: int, scale: float, generator: torch.Generator) -> Subpopulations:
        """Fresh subpopulations, genes uniform in ``[-scale, scale]``."""
        return cls(_uniform((p, m, g), scale, generator))

    @property
    def shape(self) -> tuple[int, int, int]:
        p, m, g = self.genes.shape
        return int(p), int(m), int(g)

    def reset_fitness(self) -> None:
        """Forget all credit (ESP ranks on the current generation's evaluations only)."""
        p, m, _ = self.shape
        self.fitness_sum = torch.zeros(p, m, dtype=torch.float64)
        self.fitness_count = torch.zeros(p, m, dtype=torch.int64)

    def select(self, members: Tensor) -> Tensor:
        """Index selection: ``members (N, P)`` (one member per subpopulation) → genes ``(N, P, G)``."""
        p = self.shape[0]
        return self.genes[torch.arange(p).unsqueeze(0), members]

    def credit(self, members: Tensor, scores: Tensor) -> None:
        """Every member that took part in network ``n`` (``members[n]``) is credited ``scores[n]``."""
        n, p = members.shape
        rows = torch.arange(p).unsqueeze(0).expand(n, p)
        values = scores.to(torch.float64).unsqueeze(1).expand(n, p)
        self.fitness_sum.index_put_((rows, members), values, accumulate=True)
        self.fitness_count.index_put_((rows, members), torch.ones_like(members), accumulate=True)

    def fitness(self) -> Tensor:
        """``(P, M)`` mean score over each member's participations; ``-inf`` if it took part in none."""
        mean = self.fitness_sum / self.fitness_count.clamp(min=1)
        return torch.where(self.fitness_count > 0, mean, torch.full_like(mean, -math.inf))

    def rank(self) -> Tensor:
        """``(P, M)`` member indices, best first (ties keep index order)."""
        return torch.argsort(self.fitness(), dim=1, descending=True, stable=True)

    def evolve(self, config: ESPConfig, generator: torch.Generator) -> None:
        """One ESP generation on every subpopulation at once: sort by fitness, recombine the top
        ``n_breed`` into the bottom ``2·n_breed`` slots, mutate only those offspring, reset fitness.
        After this the members are in rank order (member 0 = last generation's best)."""
        p, m, g = self.shape
        if p == 0:
            return
        order = self.rank()
        ranked = self.genes.gather(1, order.unsqueeze(2).expand(p, m, g))
        breed = config.n_breed
        # Mate of parent i: a random higher-ranked member (i > 0), any of the top `breed` for i = 0.
        bound = torch.arange(breed, dtype=torch.float64)
        bound[0] = breed
        u = torch.rand(p, breed, generator=generator, dtype=torch.float64)
        mate = torch.minimum((u * bound).long(), (bound - 1).long())
        first = ranked[:, :breed]
        second = ranked.gather(1, mate.unsqueeze(2).expand(p, breed, g))
        cut = torch.randint(1, max(g, 2), (p, breed, 1), generator=generator)
        head = torch.arange(g) < cut  # (p, breed, g): genes before the crossover point
        child_a = torch.where(head, first, second)
        child_b = torch.where(head, second, first)
        offspring = torch.stack([child_a, child_b], dim=2).reshape(p, 2 * breed, g).flip(1)
        n_off = 2 * breed
        # Cauchy mutation of the offspring only.
        hit = torch.rand(p, n_off, generator=generator) < config.mutation_rate
        where = torch.randint(0, g, (p, n_off, config.mutated_genes), generator=generator)
        noise = _cauchy((p, n_off, config.mutated_genes), config.mutation_scale, generator)
        offspring = offspring.scatter_add(2, where, noise * hit.unsqueeze(2))
        ranked[:, m - n_off :] = offspring.clamp(-config.gene_clip, config.gene_clip)
        self.genes = ranked
        self.reset_fitness()

    def reseed(self, centres: Tensor, config: ESPConfig, generator: torch.Generator) -> None:
        """Burst mutation (δ-coding): member ``m`` of subpopulation ``p`` becomes ``centres[p]`` plus
        Cauchy noise (member 0 stays exactly ``centres[p]`` when ``burst_keep_best``)."""
        p, m, g = self.shape
        if centres.shape != (p, g):
            raise ValueError(f"centres must be ({p}, {g}), got {tuple(centres.shape)}")
        genes = centres.unsqueeze(1) + _cauchy((p, m, g), config.burst_scale, generator)
        if config.burst_keep_best:
            genes[:, 0] = centres
        self.genes = genes.clamp(-config.gene_clip, config.gene_clip)
        self.reset_fitness()

    def keep(self, rows: Sequence[int]) -> Subpopulations:
        """Only the given subpopulations (lesioning)."""
        index = torch.as_tensor(list(rows), dtype=torch.int64)
        return Subpopulations(self.genes[index], self.fitness_sum[index], self.fitness_count[index])

    def extend(self, other: Subpopulations) -> Subpopulations:
        """These subpopulations followed by ``other``'s (growth)."""
        return Subpopulations(
            torch.cat([self.genes, other.genes]),
            torch.cat([self.fitness_sum, other.fitness_sum]),
            torch.cat([self.fitness_count, other.fitness_count]),
        )


# --------------------------------------------------------------------------------------------------
# ESP
# --------------------------------------------------------------------------------------------------


@dataclass
class Lesion:
    """What :meth:`ESP.lesion` found: the intact best network's score, each unit's lesioned score
    (neurons first, then sources), and the units it removed (indices before removal)."""

    baseline: float
    neuron_scores: list[float]
    source_scores: list[float]
    removed_neurons: list[int]
    removed_sources: list[int]

    @property
    def removed(self) -> bool:
        return bool(self.removed_neurons or self.removed_sources)


ScoreFn = Callable[[Network], float]
"""``score(network) -> float``: evaluate one network (e.g. mean game score over some episodes)."""
ScoreBatchFn = Callable[[Networks], Sequence[float]]
"""``score_batch(networks) -> scores``: evaluate a batch of same-structure networks at once."""


def _generator(seed: torch.Generator | int) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError("ESP draws its random numbers on the CPU: pass a CPU torch.Generator")
        return seed
    return torch.Generator().manual_seed(int(seed))


class ESP:
    """Enforced SubPopulations over own hidden neurons, recruited sources and output biases.

    State: :attr:`best` (a :class:`Network` or None), :attr:`best_score`, :attr:`stale`
    (generations since the best score last improved), :attr:`bursts_in_a_row` (bursts since the
    last improvement or adaptation), :attr:`generation`, :attr:`sources` (recruited),
    :attr:`reserve` (sources still available for growth). Every random number comes from
    :attr:`generator` (CPU), so the same seed and the same scores give the same run.

    Member columns (``members (N, C)`` from :meth:`ask`): own neurons ``0..H-1``, then one column
    per recruited source, then the output-bias subpopulation (``C = H + S + 1``). Members are
    re-ranked by :meth:`tell`, so a ``members`` tensor is only valid for the generation it came from.
    """

    def __init__(
        self,
        n_in: int,
        *,
        hidden: int,
        sources: Sequence[Source] = (),
        reserve: Sequence[Source] = (),
        config: ESPConfig | None = None,
        generator: torch.Generator | int = 0,
    ) -> None:
        if n_in < 1 or hidden < 0:
            raise ValueError(f"need n_in >= 1 and hidden >= 0, got n_in={n_in}, hidden={hidden}")
        if hidden == 0 and not sources:
            raise ValueError("a network needs at least one hidden neuron or one source")
        self.n_in = n_in
        self.config = config or ESPConfig()
        self.generator = _generator(generator)
        m, scale, g = self.config.members, self.config.init_scale, self.generator
        self.neurons = Subpopulations.random(hidden, m, neuron_genome_size(n_in), scale, g)
        self.sources: list[Source] = []
        self.transfers: list[Subpopulations] = []
        for source in sources:
            self.sources.append(source)
            self.transfers.append(self._new_transfer(source))
        self.out_bias = Subpopulations.random(1, m, N_OUTPUTS, scale, g)
        self.reserve: list[Source] = list(reserve)
        self.best: Network | None = None
        self.best_score = -math.inf
        self.stale = 0
        self.bursts_in_a_row = 0
        self.generation = 0

    # ---- structure ----------------------------------------------------------------------------

    @property
    def n_hidden(self) -> int:
        return self.neurons.shape[0]

    @property
    def n_columns(self) -> int:
        """Subpopulations in total: one member of each makes a network."""
        return self.n_hidden + len(self.sources) + 1

    def _new_transfer(self, source: Source) -> Subpopulations:
        size = transfer_genome_size(self.n_in, source.n_hidden)
        return Subpopulations.random(1, self.config.members, size, self.config.init_scale, self.generator)

    def start_transfer(self, index: int, init: str, centre: Tensor | None = None) -> None:
        """Where source ``index``'s new transfer subpopulation starts (the choices:
        :data:`agents.atari.budget.TRANSFER_INITS`): ``random`` keeps its uniform genes, ``silent``
        shrinks every member's ``T_out`` to :data:`SILENT_SCALE` of them, ``inherit`` re-seeds the
        members around ``centre`` as a burst does (member 0 exactly ``centre``), ``inherit-in``
        too but with every member's ``T_in`` exactly ``centre``'s."""
        if init not in TRANSFER_INITS:
            raise ValueError(f"unknown transfer init {init!r} (choose {', '.join(TRANSFER_INITS)})")
        population, source = self.transfers[index], self.sources[index]
        if init == "silent":
            population.genes[..., self.n_in * source.n_hidden :] *= SILENT_SCALE
        elif init in ("inherit", "inherit-in"):
            if centre is None:
                raise ValueError(f"{init} needs the genome to start around")
            genes = torch.as_tensor(centre, dtype=torch.float32).reshape(1, -1)
            population.reseed(genes, self.config, self.generator)
            if init == "inherit-in":  # every member reads the screen through the inherited T_in
                split = self.n_in * source.n_hidden
                population.genes[..., :split] = genes[..., :split]

    def _groups(self) -> list[tuple[Subpopulations, slice]]:
        """Every subpopulation group with its member columns."""
        h, s = self.n_hidden, len(self.sources)
        groups = [(self.neurons, slice(0, h))]
        groups += [(t, slice(h + i, h + i + 1)) for i, t in enumerate(self.transfers)]
        groups.append((self.out_bias, slice(h + s, h + s + 1)))
        return groups

    # ---- one generation -----------------------------------------------------------------------

    def ask(self, n_networks: int) -> tuple[Tensor, Networks]:
        """Assemble ``n_networks`` networks: ``members (N, C)`` and their stacked genes. Each
        subpopulation is walked in fresh random permutations, so members take part ``⌊N/M⌋`` or
        ``⌈N/M⌉`` times (with N < M some never do, and rank last)."""
        if n_networks < 1:
            raise ValueError(f"n_networks must be >= 1, got {n_networks}")
        m = self.config.members
        rounds = -(-n_networks // m)
        keys = torch.rand(self.n_columns, rounds, m, generator=self.generator)
        members = keys.argsort(dim=2, stable=True).reshape(self.n_columns, rounds * m)[:, :n_networks].T
        members = members.contiguous()
        return members, self.assemble(members)

    def assemble(self, members: Tensor) -> Networks:
        """Stacked genes of the networks ``members (N, C)`` (index selection, no loop over N)."""
        h, s = self.n_hidden, len(self.sources)
        return Networks(
            self.n_in,
            self.neurons.select(members[:, :h]),
            self.out_bias.select(members[:, h + s : h + s + 1])[:, 0],
            tuple(self.sources),
            tuple(t.select(members[:, h + i : h + i + 1])[:, 0] for i, t in enumerate(self.transfers)),
        )

    def tell(
        self,
        members: Tensor,
        scores: Tensor | Sequence[float] | np.ndarray,
        *,
        score: ScoreFn | None = None,
        score_batch: ScoreBatchFn | None = None,
    ) -> str:
        """Finish a generation: credit every participant with its network's score, update the best
        network, then either evolve every subpopulation or, after ``stagnation`` generations without
        improvement, burst. When the burst comes with ``bursts_before_adapt`` bursts in a row behind
        it and a score function is given, the network is also adapted (lesion, else add a recruit).

        Returns what happened: ``"evolve"``, ``"burst"``, or (burst + adaptation) ``"lesion"``,
        ``"add_source"``, ``"add_neuron"``.
        """
        members = torch.as_tensor(members, dtype=torch.int64).cpu()
        if isinstance(scores, Tensor):
            values = scores.detach().to("cpu", torch.float64).reshape(-1)
        else:
            values = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        if members.ndim != 2 or members.shape[1] != self.n_columns or values.shape != (members.shape[0],):
            raise ValueError(
                f"members must be (N, {self.n_columns}) and scores (N,), got {tuple(members.shape)}, "
                f"{tuple(values.shape)}"
            )
        if members.numel() and (members.min() < 0 or members.max() >= self.config.members):
            raise ValueError("member index out of range (members from an older generation?)")
        if not torch.isfinite(values).all():
            raise ValueError("scores must be finite")
        for group, columns in self._groups():
            group.credit(members[:, columns], values)
        self.generation += 1
        top = int(values.argmax())
        if float(values[top]) > self.best_score + SCORE_EPSILON:
            self.best = self.assemble(members[top : top + 1])[0]
            self.best_score = float(values[top])
            self.stale = 0
            self.bursts_in_a_row = 0
        else:
            self.stale += 1
        if self.stale < self.config.stagnation:
            self.evolve()
            return "evolve"
        can_score = score is not None or score_batch is not None
        adapt = can_score and self.bursts_in_a_row >= self.config.bursts_before_adapt
        self.burst()
        if not adapt:
            return "burst"
        self.bursts_in_a_row = 0
        return self.adapt(score, score_batch=score_batch)

    def evolve(self) -> None:
        """Rank, recombine and mutate every subpopulation (see :meth:`Subpopulations.evolve`)."""
        for group, _ in self._groups():
            group.evolve(self.config, self.generator)

    # ---- burst, lesion, growth ----------------------------------------------------------------

    def _require_best(self) -> Network:
        if self.best is None:
            raise RuntimeError("no best network yet: tell() at least one generation first")
        return self.best

    def burst(self) -> None:
        """δ-coding: re-seed every subpopulation around the best network's gene in its position."""
        best = self._require_best()
        cfg, g = self.config, self.generator
        self.neurons.reseed(best.neurons, cfg, g)
        for transfer, genes in zip(self.transfers, best.transfers, strict=True):
            transfer.reseed(genes.unsqueeze(0), cfg, g)
        self.out_bias.reseed(best.out_bias.unsqueeze(0), cfg, g)
        self.stale = 0
        self.bursts_in_a_row += 1

    def adapt(self, score: ScoreFn | None = None, *, score_batch: ScoreBatchFn | None = None) -> str:
        """Lesion; if nothing can go, add a recruit: the first reserve source, else a neuron."""
        if self.lesion(score, score_batch=score_batch).removed:
            return "lesion"
        if self.reserve:
            self.add_source(self.reserve.pop(0))
            return "add_source"
        self.add_neuron()
        return "add_neuron"

    def lesion(self, score: ScoreFn | None = None, *, score_batch: ScoreBatchFn | None = None) -> Lesion:
        """Score the best network intact and without each of its units (own neurons, and sources
        if ``lesion_sources``), then remove every unit whose removal costs at most
        ``lesion_tolerance``. At least one unit always stays (the one whose removal costs most).

        Pass ``score(network)`` (called with structurally reduced networks) or ``score_batch(networks)``
        (called once with the intact network followed by one variant per unit whose output
        connections are zeroed — same function, same structure, so one batched evaluation).
        """
        if (score is None) == (score_batch is None):
            raise ValueError("pass exactly one of score and score_batch")
        best = self._require_best()
        units = [("neuron", i) for i in range(best.n_hidden)]
        if self.config.lesion_sources:
            units += [("source", j) for j in range(len(best.sources))]

        def variant(kind: str, index: int, silence: bool) -> Network:
            args = ([index], ()) if kind == "neuron" else ((), [index])
            return best.silenced(*args) if silence else best.without(*args)

        if score_batch is not None:
            batch = Networks.stack([best] + [variant(k, i, True) for k, i in units])
            values = [float(v) for v in score_batch(batch)]
        else:
            assert score is not None
            values = [float(score(best))] + [float(score(variant(k, i, False))) for k, i in units]
        if len(values) != len(units) + 1:
            raise ValueError(f"score_batch returned {len(values)} scores for {len(units) + 1} networks")
        baseline, lesioned = values[0], values[1:]
        removable = [
            u for u, v in zip(units, lesioned, strict=True) if v >= baseline - self.config.lesion_tolerance
        ]
        if len(removable) >= best.n_units:
            keep = min(removable, key=lambda u: lesioned[units.index(u)])
            removable.remove(keep)
        neurons = [i for kind, i in removable if kind == "neuron"]
        sources = [i for kind, i in removable if kind == "source"]
        self._remove(neurons, sources)
        n_hidden = best.n_hidden
        return Lesion(baseline, lesioned[:n_hidden], lesioned[n_hidden:], neurons, sources)

    def _remove(self, neurons: Sequence[int], sources: Sequence[int]) -> None:
        best = self._require_best()
        self.neurons = self.neurons.keep([i for i in range(self.n_hidden) if i not in neurons])
        keep_s = [j for j in range(len(self.sources)) if j not in sources]
        self.sources = [self.sources[j] for j in keep_s]
        self.transfers = [self.transfers[j] for j in keep_s]
        self.best = best.without(neurons, sources)

    def _neutral(self, size: int, silent_from: int) -> Tensor:
        """A new unit's genes for the best network: random in, zero out (genes ``silent_from``
        onwards), so the best network computes exactly what it did before."""
        genes = _uniform((size,), self.config.init_scale, self.generator)
        genes[silent_from:] = 0.0
        return genes

    def add_neuron(self) -> int:
        """Grow by one hidden neuron: a new subpopulation of random genes. The best network gets the
        neuron with zero output weights (unchanged behaviour, unchanged best score). Returns its index."""
        cfg, g = self.config, self.generator
        size = neuron_genome_size(self.n_in)
        self.neurons = self.neurons.extend(Subpopulations.random(1, cfg.members, size, cfg.init_scale, g))
        if self.best is not None:
            row = self._neutral(size, self.n_in + 2).unsqueeze(0)
            best = self.best
            self.best = Network(
                self.n_in, torch.cat([best.neurons, row]), best.out_bias, best.sources, best.transfers
            )
        return self.n_hidden - 1

    def add_source(self, source: Source) -> int:
        """Recruit ``source``: a new transfer subpopulation of random genes. The best network gets it
        with zero ``T_out`` (unchanged behaviour). Returns its index among the sources."""
        if any(source is s for s in self.sources):
            raise ValueError(f"source {source.name!r} is already recruited")
        self.sources.append(source)
        self.transfers.append(self._new_transfer(source))
        if self.best is not None:
            size = transfer_genome_size(self.n_in, source.n_hidden)
            genes = self._neutral(size, self.n_in * source.n_hidden)
            best = self.best
            self.best = Network(
                self.n_in, best.neurons, best.out_bias, (*best.sources, source), (*best.transfers, genes)
            )
        return len(self.sources) - 1

    # ---- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (``torch.save``-able). Sources are recorded by name only; pass
        the same objects back to :meth:`from_state_dict`."""
        return {
            "n_in": self.n_in,
            "config": asdict(self.config),
            "groups": [
                (grp.genes.clone(), grp.fitness_sum.clone(), grp.fitness_count.clone())
                for grp, _ in self._groups()
            ],
            "sources": [s.name for s in self.sources],
            "reserve": [s.name for s in self.reserve],
            "best": None if self.best is None else self.best.to_arrays(),
            "best_score": self.best_score,
            "stale": self.stale,
            "bursts_in_a_row": self.bursts_in_a_row,
            "generation": self.generation,
            "generator": self.generator.get_state(),
        }

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Any], sources: Sequence[Source] = (), reserve: Sequence[Source] = ()
    ) -> ESP:
        """Rebuild an ESP from :meth:`state_dict`; ``sources``/``reserve`` in the recorded order."""
        names = ([s.name for s in sources], [s.name for s in reserve])
        if names != (list(state["sources"]), list(state["reserve"])):
            raise ValueError("sources/reserve do not match the names recorded in the state")
        esp = cls.__new__(cls)
        esp.n_in = int(state["n_in"])
        esp.config = ESPConfig(**state["config"])
        esp.generator = torch.Generator()
        esp.generator.set_state(state["generator"])
        groups = [Subpopulations(g.clone(), s.clone(), c.clone()) for g, s, c in state["groups"]]
        esp.neurons, esp.out_bias = groups[0], groups[-1]
        esp.transfers = groups[1:-1]
        esp.sources, esp.reserve = list(sources), list(reserve)
        esp.best = None if state["best"] is None else Network.from_arrays(state["best"], sources)
        esp.best_score = float(state["best_score"])
        esp.stale = int(state["stale"])
        esp.bursts_in_a_row = int(state["bursts_in_a_row"])
        esp.generation = int(state["generation"])
        return esp
