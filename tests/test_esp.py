"""ESP operators and GRUSM transfer on tensors (no emulator): credit assignment, crossover and
mutation ranges, bursts, lesioning and growth, the batched forward against a per-network loop,
frozen sources, serialisation, determinism, and a toy optimisation that must improve."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.atari.esp import ESP, ESPConfig, Subpopulations
from agents.atari.games import N_OUTPUTS
from agents.atari.grusm import Source, random_source, split_transfer, transfer_genome_size
from agents.atari.network import BatchedPolicy, Network, Networks, neuron_genome_size


def make_source(
    rng: np.random.Generator, hidden: int, n_in: int, name: str, w_in_scale: float = 1.0
) -> Source:
    return Source(
        w_in=rng.uniform(-w_in_scale, w_in_scale, (hidden, n_in)),
        bias=rng.uniform(-1, 1, hidden),
        loop=rng.uniform(-1, 1, hidden),
        w_out=rng.uniform(-1, 1, (N_OUTPUTS, hidden)),
        b_out=rng.uniform(-1, 1, N_OUTPUTS),
        name=name,
    )


def make_network(rng: np.random.Generator, n_in: int, hidden: int, sources: list[Source]) -> Network:
    """A network with random genes recruiting ``sources`` (to freeze as a source that uses sources)."""
    transfers = [rng.uniform(-1, 1, transfer_genome_size(n_in, s.n_hidden)) for s in sources]
    neurons = rng.uniform(-1, 1, (hidden, neuron_genome_size(n_in)))
    return Network(n_in, neurons, rng.uniform(-1, 1, N_OUTPUTS), tuple(sources), tuple(transfers))


def source_reference(source: Source, drive: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of a recruited source, as the module docstring of ``grusm`` defines it: every hidden
    unit (own, then each inner source's) gets ``drive`` (= T_in x) and nothing from the clamped
    inputs; returns (its outputs, its units' new states)."""
    own = source.bias.shape[0]
    h_own = np.tanh(drive[:own] + source.bias + source.loop * state[:own])
    total, states, start = source.w_out @ h_own + source.b_out, [h_own], own
    for inner, t_out in zip(source.inner, source.inner_out, strict=True):
        stop = start + inner.n_hidden
        o_inner, h_inner = source_reference(inner, drive[start:stop], state[start:stop])
        total, start = total + t_out @ o_inner, stop
        states.append(h_inner)
    return np.tanh(total), np.concatenate(states)


def reference_run(network: Network, observations: list[np.ndarray]) -> list[np.ndarray]:
    """Plain per-network, per-step numpy forward (float64), independent of the batched code."""
    n = network.n_in
    genes = network.neurons.double().numpy()
    h = np.zeros(network.n_hidden)
    h_src = [np.zeros(s.n_hidden) for s in network.sources]
    outputs = []
    for x in observations:
        x = np.asarray(x, dtype=np.float64)
        h = np.tanh(genes[:, :n] @ x + genes[:, n] + genes[:, n + 1] * h)
        total = genes[:, n + 2 :].T @ h + network.out_bias.double().numpy()
        for j, (source, transfer) in enumerate(zip(network.sources, network.transfers, strict=True)):
            t_in, t_out = split_transfer(transfer.double().numpy(), n, source.n_hidden)
            o, h_src[j] = source_reference(source, t_in @ x, h_src[j])
            total = total + t_out @ o
        outputs.append(np.tanh(total))
    return outputs


def run_fixed_inputs(networks: Networks, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Toy fitness: minus the mean squared error between outputs and ``target`` over a fixed input
    sequence (one trial per network)."""
    policy = BatchedPolicy(networks, trials=1)
    policy.reset(len(networks))
    slots = torch.arange(len(networks))
    error = torch.zeros(len(networks))
    for x in inputs:
        out = policy(x.expand(len(networks), -1), slots)
        error += ((out - target) ** 2).mean(dim=1)
    return -error / len(inputs)


# ---- credit assignment -------------------------------------------------------------------------


def test_credit_is_mean_over_participations_and_non_participants_rank_last() -> None:
    pops = Subpopulations(torch.zeros(2, 5, 3))
    members = torch.tensor([[0, 4], [1, 4], [0, 2], [3, 2]])
    pops.credit(members, torch.tensor([1.0, 5.0, 3.0, -2.0]))
    fitness = pops.fitness()
    assert fitness[0].tolist() == [2.0, 5.0, -math.inf, -2.0, -math.inf]  # member 0: (1 + 3) / 2
    assert fitness[1].tolist() == [-math.inf, -math.inf, 0.5, -math.inf, 3.0]
    assert pops.fitness_count.tolist() == [[2, 1, 0, 1, 0], [0, 0, 2, 0, 2]]
    order = pops.rank()
    assert order[0].tolist()[:3] == [1, 0, 3] and set(order[0].tolist()[3:]) == {2, 4}
    assert order[1].tolist()[:2] == [4, 2]


def test_ask_spreads_participation_evenly_and_tell_credits_everyone() -> None:
    esp = ESP(6, hidden=3, config=ESPConfig(members=8), generator=1)
    members, networks = esp.ask(24)
    assert members.shape == (24, esp.n_columns) and len(networks) == 24
    for column in range(esp.n_columns):
        assert torch.bincount(members[:, column], minlength=8).tolist() == [3] * 8
    # The assembled genes are exactly the selected members' genes.
    assert torch.equal(networks.neurons[5, 1], esp.neurons.genes[1, members[5, 1]])
    assert torch.equal(networks.out_bias[7], esp.out_bias.genes[0, members[7, 3]])


def test_tell_ranks_by_mean_credit() -> None:
    """After tell, member 0 of each subpopulation is the member with the best mean score."""
    esp = ESP(4, hidden=2, config=ESPConfig(members=4, mutation_rate=0.0), generator=2)
    before = esp.neurons.genes.clone()
    members = torch.tensor([[0, 1, 0], [1, 0, 1], [2, 3, 2], [3, 2, 3], [1, 2, 0]])
    scores = [1.0, 10.0, 2.0, 3.0, 0.0]  # neuron 0: member 1 mean 5.0; neuron 1: member 0 mean 10
    assert esp.tell(members, scores) == "evolve"
    assert torch.equal(esp.neurons.genes[0, 0], before[0, 1])
    assert torch.equal(esp.neurons.genes[1, 0], before[1, 0])
    assert esp.best_score == 10.0 and torch.equal(esp.best.neurons, before[[0, 1], [1, 0]])


# ---- crossover and mutation ----------------------------------------------------------------------


def _labelled(p: int, m: int, g: int) -> Subpopulations:
    """Member ``i`` of subpopulation ``q`` has every gene equal to ``100 q + i``; fitness = -i·(q+1)
    permuted so the ranking is not the index order."""
    genes = (100.0 * torch.arange(p).view(p, 1, 1) + torch.arange(m).view(1, m, 1)).expand(p, m, g).clone()
    pops = Subpopulations(genes)
    perm = torch.stack([torch.randperm(m, generator=torch.Generator().manual_seed(q)) for q in range(p)])
    members = perm.T.contiguous()  # network i uses member perm[q, i] of subpopulation q
    pops.credit(members, -torch.arange(m, dtype=torch.float64))  # network 0 scores best
    return pops


def test_crossover_mixes_only_top_quartile_and_replaces_the_bottom() -> None:
    p, m, g = 3, 12, 9
    config = ESPConfig(members=m, mutation_rate=0.0)
    pops = _labelled(p, m, g)
    ranked_labels = pops.rank()  # best first
    pops.evolve(config, torch.Generator().manual_seed(0))
    breed = config.n_breed
    assert breed == 3
    for q in range(p):
        labels = (pops.genes[q] - 100 * q).round().long()
        top = ranked_labels[q].tolist()
        survivors = labels[: m - 2 * breed]
        assert survivors.tolist() == [[top[i]] * g for i in range(m - 2 * breed)], "survivors in rank order"
        parents = set(top[:breed])
        for child in labels[m - 2 * breed :]:
            assert set(child.tolist()) <= parents, "offspring genes only from top-quartile parents"
            changes = int((child[1:] != child[:-1]).sum())
            assert changes <= 1, "one-point crossover: at most one switch of parent"
        assert not torch.equal(labels[m - 2 * breed :], torch.tensor([[top[-1]] * g] * (2 * breed)))
    assert (pops.fitness_count == 0).all(), "fitness is reset for the next generation"


def test_cauchy_mutation_changes_only_offspring() -> None:
    p, m, g = 2, 16, 7
    plain = _labelled(p, m, g)
    mutated = _labelled(p, m, g)
    plain.evolve(ESPConfig(members=m, mutation_rate=0.0), torch.Generator().manual_seed(5))
    mutated.evolve(ESPConfig(members=m, mutation_rate=1.0, mutated_genes=2), torch.Generator().manual_seed(5))
    breed = ESPConfig(members=m).n_breed
    diff = plain.genes != mutated.genes
    assert not diff[:, : m - 2 * breed].any(), "parents and survivors never mutate"
    changed = diff[:, m - 2 * breed :].sum(dim=2)
    assert (changed >= 1).all() and (changed <= 2).all(), "every offspring mutated in <= mutated_genes genes"


# ---- bursts, lesioning, growth -------------------------------------------------------------------


def test_burst_reseeds_every_subpopulation_around_the_best_network() -> None:
    source = make_source(np.random.default_rng(0), 3, 5, "src")
    esp = ESP(4, hidden=3, sources=[source], config=ESPConfig(members=41, stagnation=2), generator=3)
    members, _ = esp.ask(41)
    esp.tell(members, torch.arange(41.0))
    best = esp.best
    assert best is not None and best.n_hidden == 3 and len(best.transfers) == 1
    assert esp.tell(*_ask_constant(esp)) == "evolve"
    assert esp.tell(*_ask_constant(esp)) == "burst"
    assert esp.bursts_in_a_row == 1 and esp.stale == 0
    centres = [
        (esp.neurons.genes, best.neurons),
        (esp.transfers[0].genes, best.transfers[0].unsqueeze(0)),
        (esp.out_bias.genes, best.out_bias.unsqueeze(0)),
    ]
    for genes, centre in centres:
        assert torch.equal(genes[:, 0], centre), "member 0 keeps the best network's gene exactly"
        median = genes[:, 1:].median(dim=1).values
        assert (median - centre).abs().mean() < 0.1 and (median - centre).abs().max() < 0.6
        assert (genes[:, 1:] != centre.unsqueeze(1)).all(), "everyone else is perturbed"


def _ask_constant(esp: ESP, value: float = 0.0) -> tuple[torch.Tensor, list[float]]:
    members, _ = esp.ask(esp.config.members)
    return members, [value] * len(members)


def _row_keys(network: Network) -> list[bytes]:
    return [row.numpy().tobytes() for row in network.neurons]


def test_lesion_removes_exactly_the_neurons_that_do_not_help() -> None:
    esp = ESP(3, hidden=5, config=ESPConfig(members=4, lesion_tolerance=0.01), generator=4)
    esp.tell(*_ask_constant(esp, 1.0))
    best = esp.best
    assert best is not None
    keys = _row_keys(best)
    # Neurons 1 and 3 are worth 10 each; 0 hurts, 2 is neutral, 4 helps by less than the tolerance.
    worth = dict(zip(keys, [-0.01, 10.0, 0.0, 10.0, 0.005], strict=True))

    def score(network: Network) -> float:
        return sum(worth[key] for key in _row_keys(network))

    result = esp.lesion(score)
    assert result.removed_neurons == [0, 2, 4] and result.removed_sources == []
    assert result.baseline == pytest.approx(19.995)
    assert esp.n_hidden == 2 and esp.neurons.genes.shape[:2] == (2, 4)
    assert esp.best is not None and _row_keys(esp.best) == [keys[1], keys[3]]
    members, networks = esp.ask(4)
    assert members.shape == (4, 3) and networks.neurons.shape == (4, 2, neuron_genome_size(3))


def test_batched_lesion_silences_units_and_drops_useless_sources() -> None:
    rng = np.random.default_rng(5)
    sources = [make_source(rng, 2, 7, "a"), make_source(rng, 3, 7, "b")]
    esp = ESP(3, hidden=2, sources=sources, config=ESPConfig(members=4), generator=5)
    esp.tell(*_ask_constant(esp, 1.0))
    n = esp.n_in

    def score_batch(networks: Networks) -> list[float]:  # useful: neuron 0 and source "b"
        speaks_0 = networks.neurons[:, 0, n + 2 :].abs().sum(dim=1) > 0
        speaks_b = networks.transfer_out(1).abs().sum(dim=(1, 2)) > 0
        return (speaks_0.float() + speaks_b.float()).tolist()

    result = esp.lesion(score_batch=score_batch)
    assert result.neuron_scores == [1.0, 2.0] and result.source_scores == [2.0, 1.0]
    assert result.removed_neurons == [1] and result.removed_sources == [0]
    assert [s.name for s in esp.sources] == ["b"] and esp.n_hidden == 1 and len(esp.transfers) == 1
    assert esp.best is not None and [s.name for s in esp.best.sources] == ["b"]


def test_lesion_keeps_at_least_one_unit() -> None:
    esp = ESP(3, hidden=3, config=ESPConfig(members=4), generator=6)
    esp.tell(*_ask_constant(esp, 1.0))
    result = esp.lesion(lambda network: 1.0)
    assert len(result.removed_neurons) == 2 and esp.n_hidden == 1


def test_add_neuron_grows_by_one_and_keeps_the_best_networks_behaviour() -> None:
    esp = ESP(6, hidden=2, config=ESPConfig(members=4), generator=7)
    esp.tell(*_ask_constant(esp, 1.0))
    before = esp.best
    assert before is not None
    inputs = [np.random.default_rng(i).uniform(0, 1, 6) for i in range(4)]
    assert esp.add_neuron() == 2
    assert esp.n_hidden == 3 and esp.neurons.genes.shape == (3, 4, neuron_genome_size(6))
    assert esp.best is not None and esp.best.n_hidden == 3
    np.testing.assert_allclose(reference_run(esp.best, inputs), reference_run(before, inputs), atol=1e-12)
    members, networks = esp.ask(8)
    assert members.shape == (8, 4) and networks.w_in.shape == (8, 3, 6) and networks.w_out.shape == (8, 10, 3)
    policy = BatchedPolicy(networks, trials=2)
    policy.reset(16)
    assert policy(torch.rand(16, 6), torch.arange(16)).shape == (16, N_OUTPUTS)
    esp.tell(members, torch.rand(8).tolist())  # the new subpopulation evolves with the others


def test_stagnation_bursts_then_adapts_with_sources_first() -> None:
    rng = np.random.default_rng(8)
    spare = make_source(rng, 2, 4, "spare")
    esp = ESP(3, hidden=2, reserve=[spare], config=ESPConfig(members=4, stagnation=1), generator=8)
    every_unit_matters = lambda network: float(network.n_units)  # noqa: E731
    esp.tell(*_ask_constant(esp, 1.0), score=every_unit_matters)  # first best
    actions = [esp.tell(*_ask_constant(esp), score=every_unit_matters) for _ in range(6)]
    assert actions == ["burst", "burst", "add_source", "burst", "burst", "add_neuron"]
    assert [s.name for s in esp.sources] == ["spare"] and esp.n_hidden == 3 and esp.reserve == []
    assert esp.best is not None and esp.best.n_units == 4
    without_score = ESP(3, hidden=2, config=ESPConfig(members=4, stagnation=1), generator=8)
    without_score.tell(*_ask_constant(without_score, 1.0))
    assert [without_score.tell(*_ask_constant(without_score)) for _ in range(4)] == ["burst"] * 4


# ---- batched forward -----------------------------------------------------------------------------


@pytest.mark.parametrize("gather_below", [0.0, 0.5, 2.0])
def test_batched_forward_equals_a_per_network_loop(gather_below: float) -> None:
    rng = np.random.default_rng(9)
    # a plain source, and one that uses sources: a network (2 own neurons) that recruited a plain
    # source and a network with no neurons of its own that recruited one in turn
    deepest = make_network(rng, 3, 0, [make_source(rng, 2, 9, "d")]).as_source("c")
    chain = make_network(rng, 7, 2, [make_source(rng, 3, 4, "b"), deepest]).as_source("chain")
    assert chain.n_hidden == 2 + 3 + 2 and chain.inner[1].inner[0].name == "d"
    sources = [make_source(rng, 2, 11, "a"), chain]
    esp = ESP(6, hidden=3, sources=sources, config=ESPConfig(members=5), generator=9)
    n_networks, trials, steps = 4, 3, 6
    _, networks = esp.ask(n_networks)
    policy = BatchedPolicy(networks, trials=trials, gather_below=gather_below)
    episodes = n_networks * trials
    policy.reset(episodes)
    observations = rng.uniform(0, 1, (steps, episodes, 6)).astype(np.float32)
    lengths = rng.integers(2, steps + 1, episodes)  # episodes end at different times
    lengths[0] = steps
    got: dict[int, list[np.ndarray]] = {e: [] for e in range(episodes)}
    for t in range(steps):
        slots = np.flatnonzero(lengths > t)
        out = policy(torch.from_numpy(observations[t, slots]), torch.from_numpy(slots))
        for slot, row in zip(slots, out.numpy(), strict=True):
            got[int(slot)].append(row)
    for e in range(episodes):
        want = reference_run(networks[e // trials], list(observations[: lengths[e], e]))
        np.testing.assert_allclose(np.array(got[e]), np.array(want), atol=2e-5)


def test_policy_checks_the_episode_layout() -> None:
    esp = ESP(4, hidden=2, config=ESPConfig(members=4), generator=10)
    _, networks = esp.ask(3)
    policy = BatchedPolicy(networks)  # trials inferred at reset
    with pytest.raises(RuntimeError):
        policy(torch.zeros(1, 4), torch.zeros(1, dtype=torch.int64))
    with pytest.raises(ValueError):
        policy.reset(7)
    policy.reset(6)
    assert policy.n_episodes == 6
    with pytest.raises(ValueError):
        BatchedPolicy(networks, trials=2).reset(9)


# ---- GRUSM -----------------------------------------------------------------------------------------


def test_sources_are_bit_identical_after_evolving_a_target_that_uses_them() -> None:
    rng = np.random.default_rng(11)
    source = make_source(rng, 3, 9, "pong")
    original = {key: value.copy() for key, value in source.to_arrays().items()}
    esp = ESP(5, hidden=0, sources=[source], config=ESPConfig(members=6, stagnation=2), generator=11)
    inputs, target = torch.rand(3, 5), torch.rand(N_OUTPUTS) - 0.5
    for _ in range(6):
        members, networks = esp.ask(12)
        esp.tell(members, run_fixed_inputs(networks, inputs, target), score=lambda n: 0.0)
    for key, value in original.items():
        stored = getattr(source, key)
        assert stored.tobytes() == value.tobytes() and not stored.flags.writeable
    assert esp.sources[0] is source


def test_source_inputs_are_clamped_to_zero() -> None:
    rng = np.random.default_rng(12)
    source = make_source(rng, 4, 5, "huge", w_in_scale=1e6)  # would saturate if inputs reached it
    esp = ESP(5, hidden=0, sources=[source], config=ESPConfig(members=4), generator=12)
    _, networks = esp.ask(2)
    networks.transfers[0][:, : 5 * source.n_hidden] = 0.0  # T_in = 0: nothing reaches the source
    outputs = []
    for x in (torch.zeros(2, 5), torch.ones(2, 5) * 3.0, torch.rand(2, 5)):
        policy = BatchedPolicy(networks, trials=1)
        policy.reset(2)
        outputs.append([policy(x, torch.arange(2)) for _ in range(3)])
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other, strict=True):
            assert torch.equal(a, b)
    # Without clamping, a bias-only source would still be driven: check the dynamics are its own.
    h = np.zeros(4)
    for step in range(3):
        h = np.tanh(source.bias + source.loop * h)
        t_out = networks.transfer_out(0)[0].double().numpy()
        want = np.tanh(
            t_out @ np.tanh(source.w_out @ h + source.b_out) + networks.out_bias[0].double().numpy()
        )
        np.testing.assert_allclose(outputs[0][step][0].numpy(), want, atol=1e-5)


def test_transfer_genome_has_exactly_the_transfer_connections() -> None:
    rng = np.random.default_rng(13)
    sources = [make_source(rng, 3, 50, "a"), make_source(rng, 7, 2, "b")]
    n_in = 320
    esp = ESP(n_in, hidden=0, sources=sources, config=ESPConfig(members=4), generator=13)
    assert esp.n_hidden == 0 and esp.n_columns == 3  # one subpopulation per source + output biases
    for source, transfer in zip(sources, esp.transfers, strict=True):
        assert transfer.genes.shape == (1, 4, n_in * source.n_hidden + 10 * 10)
        assert transfer_genome_size(n_in, source.n_hidden) == n_in * source.n_hidden + 100
    assert esp.out_bias.genes.shape == (1, 4, N_OUTPUTS)
    _, networks = esp.ask(2)
    assert networks.transfer_in(1).shape == (2, 7, n_in) and networks.transfer_out(1).shape == (2, 10, 10)
    genes = esp.transfers[1].genes[0, 0]
    t_in, t_out = split_transfer(genes, n_in, 7)
    assert t_in[2, 5] == genes[2 * n_in + 5] and t_out[3, 4] == genes[7 * n_in + 34]


def test_a_learned_network_round_trips_through_numpy_arrays() -> None:
    rng = np.random.default_rng(14)
    sources = [make_source(rng, 2, 8, "a"), make_source(rng, 3, 8, "b")]
    esp = ESP(4, hidden=2, sources=sources, config=ESPConfig(members=4), generator=14)
    esp.tell(*_ask_constant(esp, 1.0))
    best = esp.best
    assert best is not None
    arrays = best.to_arrays()
    assert sorted(arrays) == sorted(
        [
            "w_in",
            "bias",
            "loop",
            "w_out",
            "b_out",
            "transfer_in_0",
            "transfer_out_0",
            "transfer_in_1",
            "transfer_out_1",
        ]
    )
    assert arrays["w_in"].shape == (2, 4) and arrays["w_out"].shape == (10, 2)
    assert arrays["transfer_in_1"].shape == (3, 4) and arrays["transfer_out_1"].shape == (10, 10)
    assert all(a.dtype == np.float32 for a in arrays.values())
    back = Network.from_arrays(arrays, sources)
    inputs = [rng.uniform(0, 1, 4) for _ in range(3)]
    np.testing.assert_array_equal(reference_run(back, inputs), reference_run(best, inputs))
    with pytest.raises(ValueError):
        Network.from_arrays(arrays, sources[:1])
    scratch = ESP(4, hidden=3, config=ESPConfig(members=4), generator=15)
    scratch.tell(*_ask_constant(scratch, 1.0))
    assert scratch.best is not None
    frozen = Source.from_arrays(scratch.best.to_arrays(), name="breakout")  # as the library stores it
    assert frozen.n_hidden == 3 and frozen.n_in == 4 and frozen.name == "breakout"
    np.testing.assert_array_equal(frozen.w_out, scratch.best.to_arrays()["w_out"])


def test_a_source_that_uses_sources_is_stored_whole_and_its_random_control_matches_it() -> None:
    rng = np.random.default_rng(21)
    inner = make_network(rng, 4, 0, [make_source(rng, 2, 6, "a")]).as_source("b")
    source = make_network(rng, 5, 3, [inner, make_source(rng, 1, 2, "c")]).as_source("d")
    back = Source.from_arrays(source.to_arrays(), name="d")
    assert back.n_hidden == source.n_hidden == 3 + 2 + 1 and back.n_params == source.n_params
    assert [s.n_hidden for s in back.inner] == [2, 1] and back.inner[0].inner[0].n_hidden == 2
    np.testing.assert_array_equal(back.unit_bias, source.unit_bias)
    np.testing.assert_array_equal(back.inner[0].inner_out[0], source.inner[0].inner_out[0])
    # the readouts into the network's outputs: the network's own transfer_out genes, frozen
    network = make_network(rng, 5, 3, [inner])
    np.testing.assert_array_equal(network.as_source().inner_out[0], network.to_arrays()["transfer_out_0"])
    control = random_source(source, np.random.default_rng(0))
    own_params = 3 * 5 + 3 + 3 + 10 * 3 + 10
    assert (
        control.n_params
        == source.n_params
        == own_params + (inner.n_params + 100) + (2 + 1 + 1 + 10 + 10 + 100)
    )
    assert control.to_arrays().keys() == source.to_arrays().keys()
    for key, value in control.to_arrays().items():
        assert value.shape == source.to_arrays()[key].shape
        assert value.size == 0 or not np.array_equal(value, source.to_arrays()[key]), key
    with pytest.raises(ValueError, match="at least one hidden"):
        make_network(rng, 4, 0, []).as_source()


def test_random_source_matches_the_parameter_count() -> None:
    source = make_source(np.random.default_rng(16), 5, 80, "freeway")
    control = random_source(source, np.random.default_rng(0))
    again = random_source(source, np.random.default_rng(0))
    assert control.n_params == source.n_params == 5 * 80 + 5 + 5 + 10 * 5 + 10
    for key in ("w_in", "bias", "loop", "w_out", "b_out"):
        assert getattr(control, key).shape == getattr(source, key).shape
        assert not np.array_equal(getattr(control, key), getattr(source, key))
        assert np.array_equal(getattr(control, key), getattr(again, key))
    assert control.name == "random:freeway"


# ---- determinism, checkpoints, learning ----------------------------------------------------------


def _run(seed: int, generations: int = 4) -> ESP:
    rng = np.random.default_rng(17)
    source = make_source(rng, 2, 3, "s")
    esp = ESP(4, hidden=2, sources=[source], config=ESPConfig(members=6, stagnation=2), generator=seed)
    inputs, target = (
        torch.rand(3, 4, generator=torch.Generator().manual_seed(0)),
        torch.linspace(-0.5, 0.5, 10),
    )
    for _ in range(generations):
        members, networks = esp.ask(18)
        esp.tell(members, run_fixed_inputs(networks, inputs, target), score=lambda n: -float(n.n_units))
    return esp


def test_same_seed_same_result() -> None:
    a, b, c = _run(21), _run(21), _run(22)
    assert torch.equal(a.neurons.genes, b.neurons.genes)
    assert torch.equal(a.transfers[0].genes, b.transfers[0].genes)
    assert a.best_score == b.best_score and a.best is not None and b.best is not None
    assert all(
        np.array_equal(x, y)
        for x, y in zip(a.best.to_arrays().values(), b.best.to_arrays().values(), strict=True)
    )
    assert not torch.equal(a.neurons.genes, c.neurons.genes)


def test_state_dict_resumes_exactly() -> None:
    esp = _run(23, generations=2)
    resumed = ESP.from_state_dict(esp.state_dict(), sources=esp.sources)
    for run in (esp, resumed):
        members, _ = run.ask(10)
        run.tell(members, torch.linspace(0, 1, 10))
    assert torch.equal(esp.neurons.genes, resumed.neurons.genes)
    assert torch.equal(esp.out_bias.genes, resumed.out_bias.genes)
    assert esp.best_score == resumed.best_score and esp.generation == resumed.generation == 3


def test_toy_optimisation_improves() -> None:
    """Evolve networks whose outputs must match a fixed target vector for fixed inputs."""
    inputs = torch.rand(4, 5, generator=torch.Generator().manual_seed(1))
    target = torch.linspace(-0.8, 0.8, N_OUTPUTS)
    esp = ESP(5, hidden=3, config=ESPConfig(members=10, stagnation=5), generator=24)
    means = []
    for _ in range(30):
        members, networks = esp.ask(40)
        scores = run_fixed_inputs(networks, inputs, target)
        esp.tell(members, scores)
        means.append(float(scores.mean()))
        if esp.generation == 1:
            first_best = esp.best_score
    assert esp.best_score > first_best + 0.5 * abs(first_best)  # at least halves the error
    assert np.mean(means[-5:]) > np.mean(means[:5])
