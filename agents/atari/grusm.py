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

**Sources that use sources.** A network that recruited sources is itself a source for a later
game: the network as a whole is the frozen function. Its hidden layer is its own neurons followed
by its sources' hidden units (recursively), and the later game's ``T_in`` drives all of them;
everything that read the network's own inputs (its ``W_in`` and its own, frozen ``T_in``) reads
those clamped inputs, 0, so its sources' units see only what the new ``T_in`` feeds them. Its
output is ``tanh(W_out h_own + Σ_k T_out_k o_k + b_out)`` with ``o_k`` its sources' outputs and
``T_out_k`` its frozen transfer readouts.

This file holds the frozen side and the layout of the transfer genome, in numpy as stored in the
library: the source's tensors are copied and made read-only here, so no code path can change a
stored network. The network format and forward are :mod:`agents.atari.network`, the search
:mod:`agents.atari.esp`, the steps above :mod:`agents.atari.agent`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agents.atari.games import N_OUTPUTS
from agents.atari.substrate import CELLS

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
    """A frozen ESP network recruited by GRUSM targets: its own neurons, and the sources it
    recruited itself (``inner``, read out into its outputs through ``inner_out``), if any.

    ``w_in`` (``(H_own, n_in_src)``) is kept for identity and parameter count only: a recruited source's
    inputs are clamped to 0, so the forward never reads it. Tensors are read-only float32 copies.
    """

    w_in: np.ndarray  # (H_own, n_in_src)
    bias: np.ndarray  # (H_own,)
    loop: np.ndarray  # (H_own,) recurrent self-loop weights
    w_out: np.ndarray  # (N_OUTPUTS, H_own)
    b_out: np.ndarray  # (N_OUTPUTS,)
    name: str = ""
    inner: tuple[Source, ...] = ()  # the sources this network recruited when it learned its game
    inner_out: tuple[np.ndarray, ...] = ()  # per inner source: its frozen T_out (N_OUTPUTS, N_OUTPUTS)
    classes: tuple[str, ...] = ()  # its game's input classes (substrate order); () when unknown
    inner_in: tuple[np.ndarray, ...] = ()  # per inner source, the T_in that drove it in this game

    def __post_init__(self) -> None:
        w_in = np.asarray(self.w_in)
        if w_in.ndim != 2:
            raise ValueError(f"source w_in must be (hidden, inputs), got shape {w_in.shape}")
        hidden, n_in = w_in.shape
        shapes = {
            "w_in": (hidden, n_in),
            "bias": (hidden,),
            "loop": (hidden,),
            "w_out": (N_OUTPUTS, hidden),
            "b_out": (N_OUTPUTS,),
        }
        for key, shape in shapes.items():
            object.__setattr__(self, key, _frozen(getattr(self, key), shape, key))
        if len(self.inner) != len(self.inner_out):
            raise ValueError(f"{len(self.inner)} inner sources but {len(self.inner_out)} inner_out")
        object.__setattr__(self, "inner", tuple(self.inner))
        readouts = tuple(_frozen(t, (N_OUTPUTS, N_OUTPUTS), "inner_out") for t in self.inner_out)
        object.__setattr__(self, "inner_out", readouts)
        if self.classes and len(self.classes) * CELLS != n_in:
            raise ValueError(f"{len(self.classes)} input classes do not make a source's {n_in} inputs")
        object.__setattr__(self, "classes", tuple(self.classes))
        if self.inner_in and len(self.inner_in) != len(self.inner):
            raise ValueError(f"{len(self.inner)} inner sources but {len(self.inner_in)} inner_in")
        if self.inner_in:
            pairs = zip(self.inner, self.inner_in, strict=True)
            drives = tuple(_frozen(t, (s.n_hidden, n_in), "inner_in") for s, t in pairs)
            object.__setattr__(self, "inner_in", drives)
        if self.n_hidden == 0:
            raise ValueError("a source needs at least one hidden neuron (transfer connects to them)")

    @property
    def n_own(self) -> int:
        """The network's own hidden neurons H_own."""
        return int(self.bias.shape[0])

    @property
    def n_hidden(self) -> int:
        """Hidden units H_src that transfer drives (each gets ``n_in_target`` transfer inputs): the
        own neurons, then each inner source's units."""
        return self.n_own + sum(s.n_hidden for s in self.inner)

    @property
    def unit_bias(self) -> np.ndarray:
        """``(H_src,)`` biases of all hidden units, in :attr:`n_hidden` order."""
        return np.concatenate([self.bias, *(s.unit_bias for s in self.inner)])

    @property
    def unit_loop(self) -> np.ndarray:
        """``(H_src,)`` self-loop weights of all hidden units, in :attr:`n_hidden` order."""
        return np.concatenate([self.loop, *(s.unit_loop for s in self.inner)])

    @property
    def n_in(self) -> int:
        """Inputs of the game the source was trained on (clamped to 0 when recruited)."""
        return int(self.w_in.shape[1])

    @property
    def n_params(self) -> int:
        """Number of frozen parameters (what the random-source control must match)."""
        own = sum(int(getattr(self, key).size) for key in SOURCE_KEYS)
        return own + sum(s.n_params + t.size for s, t in zip(self.inner, self.inner_out, strict=True))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The tensors to store as one library module (copies, writable): :data:`SOURCE_KEYS`, and
        per inner source ``k`` its ``T_out`` as ``inner{k}_transfer_out`` and its own arrays
        prefixed ``inner{k}_``."""
        arrays = {key: np.array(getattr(self, key)) for key in SOURCE_KEYS}
        for k, (source, t_out) in enumerate(zip(self.inner, self.inner_out, strict=True)):
            arrays[f"inner{k}_transfer_out"] = np.array(t_out)
            arrays.update({f"inner{k}_{key}": value for key, value in source.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], name: str = "") -> Source:
        """Rebuild a source from :meth:`to_arrays` output (or a source-free network's arrays)."""
        missing = [key for key in SOURCE_KEYS if key not in arrays]
        if missing:
            raise ValueError(f"source arrays lack {missing}")
        inner, inner_out = [], []
        while f"inner{len(inner)}_transfer_out" in arrays:
            prefix = f"inner{len(inner)}_"
            inner_out.append(arrays[f"{prefix}transfer_out"])
            nested = {
                key[len(prefix) :]: value
                for key, value in arrays.items()
                if key.startswith(prefix) and key != f"{prefix}transfer_out"
            }
            inner.append(cls.from_arrays(nested))
        own = {key: arrays[key] for key in SOURCE_KEYS}
        return cls(**own, name=name, inner=tuple(inner), inner_out=tuple(inner_out))


def random_source(
    like: Source,
    rng: np.random.Generator,
    *,
    scale: float = DEFAULT_INIT_SCALE,
    name: str | None = None,
) -> Source:
    """The paper's control: a freshly initialised frozen network with ``like``'s shapes, inner
    sources included (hence the same parameter count), genes uniform in ``[-scale, scale]`` like an
    untrained ESP network."""

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(-scale, scale, size=shape).astype(np.float32)

    own = {key: draw(getattr(like, key).shape) for key in SOURCE_KEYS}
    inner = tuple(random_source(s, rng, scale=scale, name="") for s in like.inner)
    inner_out = tuple(draw(t.shape) for t in like.inner_out)
    return Source(
        **own,
        name=f"random:{like.name}" if name is None else name,
        inner=inner,
        inner_out=inner_out,
        classes=like.classes,
        inner_in=tuple(draw(t.shape) for t in like.inner_in),
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


# --------------------------------------------------------------------------------------------------
# Where a transfer genome starts
# --------------------------------------------------------------------------------------------------

# How a recruited source's transfer subpopulation starts (``--transfer-init``):
#
# - ``random`` — the paper: ``T_in`` and ``T_out`` uniform like any new genes, so the source's units
#   are driven by a random projection of the target's screen and only its self-loops, biases and
#   readout are what it learned;
# - ``silent`` — the same ``T_in``, but ``T_out`` at :data:`SILENT_SCALE` of that: the source barely
#   steers the target at first and is recruited as far as evolution grows its readout;
# - ``inherit`` — the source's own wiring: ``T_in`` is what drove each of its units in its own game
#   (its ``w_in``; for the units of a source it used, the ``T_in`` it drove them with) read through
#   :func:`class_map` onto the target's substrate, and ``T_out`` the identity, so the source starts
#   out playing the target as it played its own game (every game's outputs are the same joystick
#   nodes). Members are that genome plus burst noise (member 0 exactly it);
# - ``inherit-in`` — the same, but every member keeps the inherited ``T_in`` exactly and only
#   ``T_out`` gets the burst noise: the source sees the new game through its own trained input
#   weights (which ESP's one-gene mutations would hardly move in a short run) and evolution searches
#   how its outputs map to the new game's actions.
# (:data:`agents.atari.budget.TRANSFER_INITS` names them.)
SILENT_SCALE = 0.05
"""``silent``: the starting ``T_out`` genes are uniform in ``±SILENT_SCALE × init_scale``."""


def class_map(source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """``(len(target), len(source))`` weights: which of the source game's input classes each of the
    target's classes reads under ``inherit``. A target class reads the source class of the same
    name (every hand-made table calls the agent's own object ``player``); any other reads the mean
    of the source classes that no target class is named after (all of them if none is left).
    Unknown names (``()``) fall back to matching classes by position."""
    if not source or not target:
        raise ValueError("class_map needs the classes of both games")
    weights = np.zeros((len(target), len(source)), np.float32)
    named = {name: i for i, name in enumerate(source)}
    unmatched = [i for i, name in enumerate(source) if name not in set(target)] or list(range(len(source)))
    for t, name in enumerate(target):
        if name in named:
            weights[t, named[name]] = 1.0
        else:
            weights[t, unmatched] = 1.0 / len(unmatched)
    return weights


def inherited_transfer(source: Source, target_classes: Sequence[str]) -> np.ndarray:
    """The ``inherit`` transfer genome of ``source`` for a target whose substrate has
    ``target_classes``: ``T_in`` ``(H_src, classes × CELLS)`` from each unit's own drive mapped cell
    by cell through :func:`class_map`, then ``T_out`` the identity (the comment above
    :data:`SILENT_SCALE` says why)."""
    t_in = _inherited_drive(source, tuple(target_classes))
    return np.concatenate([t_in.ravel(), np.eye(N_OUTPUTS, dtype=np.float32).ravel()])


def _inherited_drive(source: Source, target: tuple[str, ...]) -> np.ndarray:
    """``(source.n_hidden, len(target) × CELLS)``: each unit's drive in the source's own game, read
    onto the target's substrate."""
    if source.classes:
        weights = class_map(source.classes, target)
    else:
        weights = class_map(_positions(source.n_in // CELLS), _positions(len(target)))

    def mapped(drive: np.ndarray) -> np.ndarray:  # (units, Cs × CELLS) → (units, Ct × CELLS)
        cells = drive.reshape(drive.shape[0], weights.shape[1], CELLS)
        return np.einsum("ts,usc->utc", weights, cells).reshape(drive.shape[0], weights.shape[0] * CELLS)

    blocks = [mapped(source.w_in)]
    for k, inner in enumerate(source.inner):
        if source.inner_in:
            blocks.append(mapped(source.inner_in[k]))
        else:  # how this network drove it is not known: the inner source's own wiring
            blocks.append(_inherited_drive(inner, target))
    return np.concatenate(blocks).astype(np.float32)


def _positions(count: int) -> tuple[str, ...]:
    """Placeholder class names that match classes by position."""
    return tuple(f"#{i}" for i in range(count))
