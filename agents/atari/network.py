"""The network format of GRUSM-ESP, and the batched recurrent forward of many networks at once.

**Network.** ``n_in`` inputs → ``H`` hidden tanh neurons, each with a recurrent self-loop
(``h_t = tanh(W_in x_t + b + s ⊙ h_{t-1})``) → ``N_OUTPUTS`` (10) tanh outputs. A network may
also recruit frozen *sources* (:class:`agents.atari.grusm.Source`), each driven through evolved
transfer weights (``T_in``: target inputs → source hidden; ``T_out``: source outputs → target
outputs), so its output is ``tanh(W_out h + Σ_s T_out_s o_s + b_out)``.

**Genes.** A network is held as the genes ESP evolves (:mod:`agents.atari.esp`): per hidden neuron
``[w_in (n_in), bias, self-loop, w_out (10)]`` (:func:`neuron_genome_size`); per recruited source
``[T_in (H_src × n_in), T_out (10 × 10)]`` flattened
(:func:`agents.atari.grusm.transfer_genome_size`); and the 10 output biases. A hidden neuron only
talks to the inputs, itself and the outputs, so adding or removing one never changes another
neuron's genes.

**Batches.** :class:`Network` is one network (what ESP keeps as its best, what is stored);
:class:`Networks` is N networks of one structure as stacked genes, their weights decoded as views;
:class:`BatchedPolicy` runs all of them, each on ``trials`` episodes, as a few batched matmuls per
step on ``device`` (genes stay on the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from agents.atari.games import N_OUTPUTS
from agents.atari.grusm import SOURCE_KEYS, Source, split_transfer, transfer_genome_size

GATHER_BELOW = 0.15
"""Forward strategy switch. With ``k`` active episode slots out of ``E``, the policy either scatters
the observations into a zero ``(E, n_in)`` buffer and runs one bmm per network over all its trials
(cost ∝ E, no weight copies), or gathers every active slot's weight matrix (cost ∝ k, but copies
``k × H × n_in`` weights). Gathering wins when fewer than about 15% of the slots still run
(measurements: ``benchmarks/README.md``)."""


def neuron_genome_size(n_in: int) -> int:
    """Genes of one hidden neuron: its ``n_in`` input weights, bias, self-loop, ``N_OUTPUTS`` output
    weights, in that order."""
    return n_in + 2 + N_OUTPUTS


def _float(tensor: Tensor | np.ndarray) -> Tensor:
    """A float32 CPU tensor copy of ``tensor`` (genomes live on the CPU)."""
    if isinstance(tensor, np.ndarray):
        return torch.from_numpy(np.array(tensor, dtype=np.float32, copy=True))
    return tensor.detach().to(device="cpu", dtype=torch.float32, copy=True)


# --------------------------------------------------------------------------------------------------
# Networks: one (genome level) and a batch (stacked genomes with decoded weight views)
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Network:
    """One network as genes: its own hidden neurons, the sources it recruits with their transfer
    genomes, and its output biases. This is what ESP keeps as *the best network*, what a lesion
    score function receives, and what is stored (:meth:`to_arrays`)."""

    n_in: int
    neurons: Tensor  # (H, neuron_genome_size(n_in))
    out_bias: Tensor  # (N_OUTPUTS,)
    sources: tuple[Source, ...] = ()
    transfers: tuple[Tensor, ...] = ()  # per source: (transfer_genome_size(n_in, H_src),)

    def __post_init__(self) -> None:
        self.neurons = _float(self.neurons).reshape(-1, neuron_genome_size(self.n_in))
        self.out_bias = _float(self.out_bias).reshape(N_OUTPUTS)
        self.sources = tuple(self.sources)
        self.transfers = tuple(_float(t) for t in self.transfers)
        if len(self.sources) != len(self.transfers):
            raise ValueError(f"{len(self.sources)} sources but {len(self.transfers)} transfer genomes")
        for source, genes in zip(self.sources, self.transfers, strict=True):
            if genes.shape != (transfer_genome_size(self.n_in, source.n_hidden),):
                raise ValueError(f"transfer genome for source {source.name!r} has shape {tuple(genes.shape)}")

    @property
    def n_hidden(self) -> int:
        """Own hidden neurons (0 when the network only reuses sources)."""
        return int(self.neurons.shape[0])

    @property
    def n_units(self) -> int:
        """Lesionable units: own neurons + recruited sources."""
        return self.n_hidden + len(self.sources)

    def clone(self) -> Network:
        """A deep copy of the genes (sources are shared: they are frozen)."""
        return Network(self.n_in, self.neurons, self.out_bias, self.sources, self.transfers)

    def without(self, neurons: Sequence[int] = (), sources: Sequence[int] = ()) -> Network:
        """The network with the given own neurons and recruited sources removed."""
        keep_n = [i for i in range(self.n_hidden) if i not in set(neurons)]
        keep_s = [j for j in range(len(self.sources)) if j not in set(sources)]
        return Network(
            self.n_in,
            self.neurons[keep_n],
            self.out_bias,
            tuple(self.sources[j] for j in keep_s),
            tuple(self.transfers[j] for j in keep_s),
        )

    def silenced(self, neurons: Sequence[int] = (), sources: Sequence[int] = ()) -> Network:
        """The same structure with the given units' output connections zeroed: it computes exactly
        what :meth:`without` computes, but stacks with the intact network (batched lesioning)."""
        network = self.clone()
        network.neurons[list(neurons), self.n_in + 2 :] = 0.0
        transfers = list(network.transfers)
        for j in sources:
            transfers[j] = transfers[j].clone()
            transfers[j][self.n_in * self.sources[j].n_hidden :] = 0.0
        network.transfers = tuple(transfers)
        return network

    def as_source(self, name: str = "", classes: Sequence[str] = ()) -> Source:
        """This network frozen as a source for a later game, its own sources with it (a source
        that uses sources: :mod:`agents.atari.grusm`); its transfer inputs are not part of its
        function (they read its clamped inputs) but are kept as how it drove its sources in its
        own game, whose input classes are ``classes``."""
        arrays = self.to_arrays()
        own = {key: arrays[key] for key in SOURCE_KEYS}
        readouts = tuple(arrays[f"transfer_out_{i}"] for i in range(len(self.sources)))
        drives = tuple(arrays[f"transfer_in_{i}"] for i in range(len(self.sources)))
        return Source(
            **own, name=name, inner=self.sources, inner_out=readouts, classes=tuple(classes), inner_in=drives
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Numpy tensors to store: ``w_in (H, n_in)``, ``bias (H,)``, ``loop (H,)``, ``w_out (10, H)``,
        ``b_out (10,)``, and per recruited source ``i`` (in :attr:`sources` order)
        ``transfer_in_i (H_src, n_in)`` and ``transfer_out_i (10, 10)``. The sources themselves are
        not included: record which library modules they are (e.g. ``[s.name for s in sources]``)."""
        n = self.n_in
        arrays = {
            "w_in": self.neurons[:, :n].numpy().copy(),
            "bias": self.neurons[:, n].numpy().copy(),
            "loop": self.neurons[:, n + 1].numpy().copy(),
            "w_out": self.neurons[:, n + 2 :].T.numpy().copy(),
            "b_out": self.out_bias.numpy().copy(),
        }
        for i, (source, genes) in enumerate(zip(self.sources, self.transfers, strict=True)):
            t_in, t_out = split_transfer(genes, n, source.n_hidden)
            arrays[f"transfer_in_{i}"] = t_in.numpy().copy()
            arrays[f"transfer_out_{i}"] = t_out.numpy().copy()
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], sources: Sequence[Source] = ()) -> Network:
        """Inverse of :meth:`to_arrays`; ``sources`` in the order they were recruited."""
        w_in = np.asarray(arrays["w_in"], dtype=np.float32)
        n_in = int(w_in.shape[1])
        neurons = np.concatenate(
            [
                w_in,
                np.asarray(arrays["bias"], dtype=np.float32).reshape(-1, 1),
                np.asarray(arrays["loop"], dtype=np.float32).reshape(-1, 1),
                np.asarray(arrays["w_out"], dtype=np.float32).T.reshape(-1, N_OUTPUTS),
            ],
            axis=1,
        )
        extra = {k for k in arrays if k.startswith("transfer_in_")}
        if len(extra) != len(sources):
            raise ValueError(f"arrays hold {len(extra)} transfer genomes but {len(sources)} sources given")
        transfers = [
            np.concatenate(
                [
                    np.asarray(arrays[f"transfer_in_{i}"]).ravel(),
                    np.asarray(arrays[f"transfer_out_{i}"]).ravel(),
                ]
            )
            for i in range(len(sources))
        ]
        return cls(
            n_in,
            torch.from_numpy(neurons),
            _float(arrays["b_out"]),
            tuple(sources),
            tuple(map(_float, transfers)),
        )


@dataclass(eq=False)
class Networks:
    """N networks of one structure as stacked genes, with their weights as views (no copies):
    ``w_in (N, H, n_in)``, ``bias``/``loop (N, H)``, ``w_out (N, 10, H)``, ``out_bias (N, 10)``,
    and per source ``transfer_in(i) (N, H_src, n_in)``, ``transfer_out(i) (N, 10, 10)``."""

    n_in: int
    neurons: Tensor  # (N, H, G)
    out_bias: Tensor  # (N, N_OUTPUTS)
    sources: tuple[Source, ...] = ()
    transfers: tuple[Tensor, ...] = ()  # per source: (N, transfer genes)

    def __len__(self) -> int:
        return int(self.out_bias.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.neurons.shape[1])

    @property
    def w_in(self) -> Tensor:
        return self.neurons[..., : self.n_in]

    @property
    def bias(self) -> Tensor:
        return self.neurons[..., self.n_in]

    @property
    def loop(self) -> Tensor:
        return self.neurons[..., self.n_in + 1]

    @property
    def w_out(self) -> Tensor:
        return self.neurons[..., self.n_in + 2 :].transpose(1, 2)

    def transfer_in(self, i: int) -> Tensor:
        return split_transfer(self.transfers[i], self.n_in, self.sources[i].n_hidden)[0]

    def transfer_out(self, i: int) -> Tensor:
        return split_transfer(self.transfers[i], self.n_in, self.sources[i].n_hidden)[1]

    def __getitem__(self, index: int) -> Network:
        return Network(
            self.n_in,
            self.neurons[index],
            self.out_bias[index],
            self.sources,
            tuple(t[index] for t in self.transfers),
        )

    def part(self, start: int, stop: int) -> Networks:
        """Networks ``start`` to ``stop - 1`` (views, no copies)."""
        return Networks(
            self.n_in,
            self.neurons[start:stop],
            self.out_bias[start:stop],
            self.sources,
            tuple(t[start:stop] for t in self.transfers),
        )

    @classmethod
    def stack(cls, networks: Sequence[Network]) -> Networks:
        """Stack networks of identical structure (same n_in, H and the same source objects)."""
        if not networks:
            raise ValueError("no networks to stack")
        first = networks[0]
        for other in networks[1:]:
            same_sources = len(other.sources) == len(first.sources) and all(
                a is b for a, b in zip(other.sources, first.sources, strict=True)
            )
            if other.n_in != first.n_in or other.n_hidden != first.n_hidden or not same_sources:
                raise ValueError("networks to stack must share n_in, hidden size and sources")
        return cls(
            first.n_in,
            torch.stack([n.neurons for n in networks]),
            torch.stack([n.out_bias for n in networks]),
            first.sources,
            tuple(torch.stack([n.transfers[j] for n in networks]) for j in range(len(first.sources))),
        )


# --------------------------------------------------------------------------------------------------
# Batched forward
# --------------------------------------------------------------------------------------------------


class BatchedPolicy:
    """The forward of a whole batch of networks, each run on ``trials`` episodes at once.

    Evaluation protocol: ``policy.reset(n_episodes)`` (zeroes every recurrent state), then per
    environment step ``policy(observations (k, n_in) float32, slots (k,) int64) -> (k, 10)`` for the
    ``k`` episodes still running. **Episode slot layout: ``slot = network * trials + trial``**, so
    slot ``e`` belongs to network ``e // trials``. Slots in one call must be distinct; a slot that is
    not passed keeps its state (finished episodes simply drop out). Outputs are tanh activations on
    ``device``.

    Internally own hidden neurons and every source's hidden neurons form one hidden layer of
    ``H + Σ H_src`` units whose input weights are ``[W_in; T_in_1; …]`` (source inputs are clamped
    to 0, so their own ``w_in`` never appears); the output reads ``[h_own, o_1, …]`` through
    ``[W_out, T_out_1, …]``. Source outputs ``o_s = tanh(W_out_s h_s + b_out_s)`` share one frozen
    block-diagonal matrix for the whole batch; a source that used sources is read out whole by its
    :class:`FrozenReadout` (its own sources' outputs through its frozen ``T_out``).
    """

    def __init__(
        self,
        networks: Networks,
        trials: int | None = None,
        device: torch.device = torch.device("cpu"),
        *,
        gather_below: float = GATHER_BELOW,
    ) -> None:
        if trials is not None and trials < 1:
            raise ValueError(f"trials must be >= 1, got {trials}")
        self.device = device
        self.n_networks = len(networks)
        self.n_in = networks.n_in
        self.n_hidden = networks.n_hidden
        self.trials = trials
        self.gather_below = gather_below
        n, dev = self.n_networks, self.device
        sources = networks.sources
        hidden_in = [networks.w_in] + [networks.transfer_in(i) for i in range(len(sources))]
        self._w_hid = torch.cat(hidden_in, dim=1).to(dev).contiguous()  # (N, Ha, n_in)
        src_bias = [torch.tensor(s.unit_bias).expand(n, -1) for s in sources]
        src_loop = [torch.tensor(s.unit_loop).expand(n, -1) for s in sources]
        self._b_hid = torch.cat([networks.bias, *src_bias], dim=1).to(dev)  # (N, Ha)
        self._l_hid = torch.cat([networks.loop, *src_loop], dim=1).to(dev)  # (N, Ha)
        # plain sources' readouts: one frozen block-diagonal product for the whole batch (the bits
        # every stored network was committed with); a source that used sources has a zero block
        # and its whole readout (:class:`FrozenReadout`) written into its columns
        self._src_w: Tensor | None = None  # (Σ H_src, 10 S)
        self._src_b: Tensor | None = None
        self._whole: list[tuple[int, int, FrozenReadout]] = []  # column, first unit, readout
        if sources:
            blocks, unit = [], 0
            for i, source in enumerate(sources):
                if source.inner:
                    blocks.append(torch.zeros(source.n_hidden, N_OUTPUTS))
                    self._whole.append((N_OUTPUTS * i, unit, FrozenReadout(source, dev)))
                else:
                    blocks.append(torch.tensor(source.w_out).T)
                unit += source.n_hidden
            self._src_w = torch.block_diag(*blocks).to(dev)
            self._src_b = torch.cat([torch.tensor(s.b_out) for s in sources]).to(dev)
        readout = [networks.w_out] + [networks.transfer_out(i) for i in range(len(sources))]
        self._w_cat = torch.cat(readout, dim=2).to(dev).contiguous()  # (N, 10, H + 10 S)
        self._b_out = networks.out_bias.to(dev)
        self.n_units = int(self._w_hid.shape[1])
        self._h: Tensor | None = None

    @property
    def n_episodes(self) -> int:
        """Episode slots since the last :meth:`reset` (``n_networks × trials``)."""
        return 0 if self._h is None else int(self._h.shape[0])

    def reset(self, n_episodes: int) -> None:
        """Start ``n_episodes`` episodes (all recurrent states zero). With ``trials`` unset at
        construction it is ``n_episodes / n_networks``."""
        trials = self.trials
        if trials is None:
            if n_episodes < 1 or n_episodes % self.n_networks:
                raise ValueError(f"{n_episodes} episodes cannot be split over {self.n_networks} networks")
            trials = n_episodes // self.n_networks
        elif n_episodes != self.n_networks * trials:
            raise ValueError(
                f"expected {self.n_networks} networks × {trials} trials episodes, got {n_episodes}"
            )
        self._t = trials
        # every episode's own copy of its network's weights, so that each step is one
        # (1 × inputs) · (inputs × units) product per running episode whichever episodes run:
        # an episode's outputs are then the same bits in any batch, which is what lets worker
        # processes split a generation without changing a score
        self._w_hid_e = self._w_hid.repeat_interleave(trials, dim=0)  # (E, Ha, n_in)
        self._w_cat_e = self._w_cat.repeat_interleave(trials, dim=0)  # (E, 10, H + 10 S)
        self._h = torch.zeros(n_episodes, self.n_units, device=self.device)
        self._b_e = self._b_hid.repeat_interleave(trials, dim=0)
        self._l_e = self._l_hid.repeat_interleave(trials, dim=0)
        self._bo_e = self._b_out.repeat_interleave(trials, dim=0)
        self._x = torch.zeros(n_episodes, self.n_in, device=self.device)
        self._all = torch.arange(n_episodes, device=self.device)

    @torch.no_grad()
    def __call__(self, observations: Tensor | np.ndarray, slots: Tensor | np.ndarray) -> Tensor:
        """One step of the running episodes ``slots``; returns their ``(k, 10)`` outputs."""
        if self._h is None:
            raise RuntimeError("call reset(n_episodes) before stepping the policy")
        x = torch.as_tensor(observations).to(self.device, torch.float32)
        slots = torch.as_tensor(slots).to(self.device, torch.int64)
        if x.ndim != 2 or x.shape[1] != self.n_in or slots.shape != (x.shape[0],):
            shapes = f"{tuple(x.shape)}, {tuple(slots.shape)}"
            raise ValueError(f"observations must be (k, {self.n_in}) with slots (k,), got {shapes}")
        k, e = x.shape[0], self._h.shape[0]
        if k < self.gather_below * e:
            return self._step_gathered(x, slots)
        every = k == e and torch.equal(slots, self._all)  # all episodes running, in slot order
        if not every:
            self._x.zero_()
            self._x.index_copy_(0, slots, x)
            x = self._x
        pre = torch.bmm(x.unsqueeze(1), self._w_hid_e.transpose(1, 2)).squeeze(1)
        h = torch.tanh(pre + self._b_e + self._l_e * self._h)
        if every:
            self._h = h
        else:
            self._h.index_copy_(0, slots, h.index_select(0, slots))
        z = self.readout_inputs(h).unsqueeze(1)
        out = torch.tanh(torch.bmm(z, self._w_cat_e.transpose(1, 2)).squeeze(1) + self._bo_e)
        return out if every else out.index_select(0, slots)

    def _step_gathered(self, x: Tensor, slots: Tensor) -> Tensor:
        """Few running episodes: gather each one's weights instead of computing every slot (the
        same products as every slot's, so the same bits)."""
        assert self._h is not None
        pre = torch.bmm(x.unsqueeze(1), self._w_hid_e.index_select(0, slots).transpose(1, 2)).squeeze(1)
        state = self._h.index_select(0, slots)
        h = torch.tanh(pre + self._b_e.index_select(0, slots) + self._l_e.index_select(0, slots) * state)
        self._h.index_copy_(0, slots, h)
        z = self.readout_inputs(h).unsqueeze(1)
        out = torch.bmm(z, self._w_cat_e.index_select(0, slots).transpose(1, 2)).squeeze(1)
        return torch.tanh(out + self._bo_e.index_select(0, slots))

    def units(self, slots: Tensor) -> Tensor:
        """The hidden units' current states ``(k, H + Σ H_src)`` of episodes ``slots`` (own neurons,
        then each source's units): what a diagnosis reads after a step."""
        if self._h is None:
            raise RuntimeError("call reset(n_episodes) before reading the units")
        return self._h.index_select(0, torch.as_tensor(slots, device=self.device))

    def readout_inputs(self, h: Tensor) -> Tensor:
        """``[h_own, o_1, …, o_S]`` from hidden states ``(k, H + Σ H_src)``: what the output reads."""
        if self._src_w is None or self._src_b is None:
            return h
        units = h[:, self.n_hidden :]
        outputs = torch.tanh(units @ self._src_w + self._src_b)
        for column, start, readout in self._whole:
            outputs[:, column : column + N_OUTPUTS] = readout(units[:, start : start + readout.n_units])
        return torch.cat([h[:, : self.n_hidden], outputs], dim=1)


class FrozenReadout:
    """A recruited source's outputs from its hidden units' states ``(k, H_src)`` (own neurons, then
    its inner sources' units): ``tanh(h_own W_outᵀ + Σ_k o_k T_out_kᵀ + b_out)``, ``o_k`` the inner
    sources' outputs, read the same way. Frozen tensors on ``device``."""

    def __init__(self, source: Source, device: torch.device) -> None:
        self.n_own, self.n_units = source.n_own, source.n_hidden
        self.w_out = torch.tensor(source.w_out).T.to(device)  # (H_own, 10)
        self.b_out = torch.tensor(source.b_out).to(device)
        self.inner = [FrozenReadout(s, device) for s in source.inner]
        self.inner_out = [torch.tensor(t).T.to(device) for t in source.inner_out]  # (10, 10) each

    def __call__(self, h: Tensor) -> Tensor:
        pre = h[:, : self.n_own] @ self.w_out + self.b_out
        for o_k, t_out in zip(_read_sources(self.inner, h, self.n_own), self.inner_out, strict=True):
            pre = pre + o_k @ t_out
        return torch.tanh(pre)


def _read_sources(readouts: list[FrozenReadout], h: Tensor, start: int) -> list[Tensor]:
    """Each source's outputs, its units taken in order from column ``start`` of ``h``."""
    outputs = []
    for readout in readouts:
        outputs.append(readout(h[:, start : start + readout.n_units]))
        start += readout.n_units
    return outputs
