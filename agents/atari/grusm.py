"""GRUSM (General ReUse of Static Modules): frozen source networks and the transfer genome.

GRUSM-ESP (Braylan, Hollenbeck, Meyerson & Miikkulainen, *Reuse of Neural Modules for General
Video Game Playing*, AAAI 2016) learns a new game by reusing the frozen networks of earlier games.
A *source* is the best ESP network of an earlier game, frozen. A target network recruits it with
the source's own inputs clamped to 0, so a source hidden neuron ``j`` computes::

    h_j(t) = tanh(b_j + s_j · h_j(t-1) + Σ_i T_in[j, i] · x_i(t))      (x = the *target's* inputs)
    o(t)   = tanh(W_out h(t) + b_out)                                    (the source's 10 outputs)

and the target adds ``T_out · o(t)`` to its own output pre-activation. Only the transfer weights
``T_in`` (target inputs → source hidden) and ``T_out`` (source outputs → target outputs) evolve.

The algorithm, per new game, and where each step lives::

    recruit sources   the library's networks of other games, frozen     agent.choose_sources, Source
                      (or random ones with their shapes: the control)   random_source
    transfer genomes  one ESP subpopulation per source: T_in, T_out     transfer_genome_size,
                      flattened; forward with the target's own units    split_transfer, BatchedPolicy
    self-organize     ESP over transfer genomes + output biases only,   AtariAgent.self_organize
                      for a share of the generations or until target
    growth            ESP goes on with adaptation: after stagnation a   AtariAgent.grow, ESP.tell,
                      burst; after repeated bursts lesion, else add a   ESP.adapt, ESP.add_neuron
                      recruit (a new hidden neuron)
    lesion            drop the best network's neurons and sources it    ESP.lesion, AtariAgent.prune
                      does not need (at least one unit stays)
    commit            its own part frozen as a module (a later game's   AtariAgent.solution
                      source), transfer weights stored per task

This file holds the frozen side and the layout of the transfer genome, in numpy as stored in the
library: the source's tensors are copied and made read-only here, so no code path can change a
stored network. The network format and forward are :mod:`agents.atari.network`, the search
:mod:`agents.atari.esp`, the steps above :mod:`agents.atari.agent`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from agents.atari.games import N_OUTPUTS

DEFAULT_INIT_SCALE = 1.0
"""Initial genes are drawn uniformly from ``[-scale, scale]`` (ESP's initial populations, new
subpopulations, and the paper's *random source* control, so that control looks like an
untrained ESP network)."""

SOURCE_KEYS = ("w_in", "bias", "loop", "w_out", "b_out")
"""Names of a source's tensors in :meth:`Source.to_arrays` (the library module's tensors)."""


def _frozen(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A read-only float32 copy of ``array``, checked against ``shape``."""
    copy = np.array(array, dtype=np.float32, copy=True, order="C")
    if copy.shape != shape:
        raise ValueError(f"source tensor {name!r} has shape {copy.shape}, expected {shape}")
    copy.flags.writeable = False
    return copy


@dataclass(frozen=True, eq=False)
class Source:
    """A frozen ESP network (no sources of its own) recruited by GRUSM targets.

    ``w_in`` (``(H, n_in_src)``) is kept for identity and parameter count only: a recruited source's
    inputs are clamped to 0, so the forward never reads it. Tensors are read-only float32 copies.
    """

    w_in: np.ndarray  # (H, n_in_src)
    bias: np.ndarray  # (H,)
    loop: np.ndarray  # (H,) recurrent self-loop weights
    w_out: np.ndarray  # (N_OUTPUTS, H)
    b_out: np.ndarray  # (N_OUTPUTS,)
    name: str = ""

    def __post_init__(self) -> None:
        w_in = np.asarray(self.w_in)
        if w_in.ndim != 2:
            raise ValueError(f"source w_in must be (hidden, inputs), got shape {w_in.shape}")
        hidden, n_in = w_in.shape
        if hidden == 0:
            raise ValueError("a source needs at least one hidden neuron (transfer connects to them)")
        shapes = {
            "w_in": (hidden, n_in),
            "bias": (hidden,),
            "loop": (hidden,),
            "w_out": (N_OUTPUTS, hidden),
            "b_out": (N_OUTPUTS,),
        }
        for key, shape in shapes.items():
            object.__setattr__(self, key, _frozen(getattr(self, key), shape, key))

    @property
    def n_hidden(self) -> int:
        """Hidden neurons H_src (each gets ``n_in_target`` transfer inputs)."""
        return int(self.bias.shape[0])

    @property
    def n_in(self) -> int:
        """Inputs of the game the source was trained on (clamped to 0 when recruited)."""
        return int(self.w_in.shape[1])

    @property
    def n_params(self) -> int:
        """Number of frozen parameters (what the random-source control must match)."""
        return sum(int(getattr(self, key).size) for key in SOURCE_KEYS)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The tensors to store as a library module (copies, writable)."""
        return {key: np.array(getattr(self, key)) for key in SOURCE_KEYS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], name: str = "") -> Source:
        """Rebuild a source from :meth:`to_arrays` output (or a source-free network's arrays)."""
        missing = [key for key in SOURCE_KEYS if key not in arrays]
        if missing:
            raise ValueError(f"source arrays lack {missing}")
        return cls(**{key: arrays[key] for key in SOURCE_KEYS}, name=name)


def random_source(
    like: Source,
    rng: np.random.Generator,
    *,
    scale: float = DEFAULT_INIT_SCALE,
    name: str | None = None,
) -> Source:
    """The paper's control: a freshly initialised frozen network with ``like``'s shapes (hence the
    same parameter count), genes uniform in ``[-scale, scale]`` like an untrained ESP network."""

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(-scale, scale, size=shape).astype(np.float32)

    return Source(
        w_in=draw(like.w_in.shape),
        bias=draw(like.bias.shape),
        loop=draw(like.loop.shape),
        w_out=draw(like.w_out.shape),
        b_out=draw(like.b_out.shape),
        name=f"random:{like.name}" if name is None else name,
    )


def transfer_genome_size(n_in: int, source_hidden: int) -> int:
    """Genes of one source's transfer genome: ``T_in`` (``source_hidden × n_in``, target inputs →
    source hidden) then ``T_out`` (``N_OUTPUTS × N_OUTPUTS``, source outputs → target outputs)."""
    return n_in * source_hidden + N_OUTPUTS * N_OUTPUTS


def split_transfer(genes: np.ndarray, n_in: int, source_hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Views ``(T_in (..., source_hidden, n_in), T_out (..., N_OUTPUTS, N_OUTPUTS))`` of transfer
    genomes ``(..., transfer_genome_size)``; works on numpy arrays and torch tensors alike."""
    size = transfer_genome_size(n_in, source_hidden)
    if genes.shape[-1] != size:
        raise ValueError(f"transfer genome has {genes.shape[-1]} genes, expected {size}")
    lead = tuple(genes.shape[:-1])
    split = n_in * source_hidden
    t_in = genes[..., :split].reshape(*lead, source_hidden, n_in)
    t_out = genes[..., split:].reshape(*lead, N_OUTPUTS, N_OUTPUTS)
    return t_in, t_out
