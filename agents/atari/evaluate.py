"""Lock-step evaluation of a batch of policies on real ALE emulators.

Conventions are those of ``ALE/<Game>-v5`` (gymnasium + ale-py): every agent step repeats the
action for 4 emulator frames, sticky actions with ``repeat_action_probability`` 0.25 (per frame,
the previously executed action is kept with that probability), the full 18-action set, the raw
unclipped game score, and an episode frame cap ``max_frames`` (emulator frames, 4 per agent
step: an episode stops after ``max_frames // 4`` steps or at game over).

**Reproducibility.** Every episode starts from one state per game, a freshly loaded emulator's
after ``reset_game()`` (:func:`start_episode`; ``reset_game()`` itself is a soft reset that keeps
some of what the emulator ran before: Freeway's scores changed with which pooled emulator played
an episode), and episode ``e`` of a call draws its sticky-action decisions from
``numpy.random.default_rng([seed, e])``. Stickiness is applied here, per frame, exactly as ALE's
``StellaEnvironment::act`` does it, because ALE's own generator belongs to the emulator and can
only be re-seeded by reloading the ROM (slow). ALE is deterministic given its state and the
actions, so the same ``(game, policy, n_episodes, max_frames, seed, sticky)`` gives the same
scores whichever emulator runs which episode, how many run at once, what they ran before and in
which process.

**Lock-step.** Up to ``emulators`` episodes run at once (default :data:`DEFAULT_EMULATORS`); per
step the running emulators' palette screens are copied into one buffer, turned into substrate
inputs in one vectorised call (:class:`agents.atari.substrate.Substrate`), the policy is called once
for all of them (``policy(observations (k, n_inputs), slots (k,)) -> (k, 10)``) and the actions
are mapped in one call. Finished episodes drop out; a waiting episode takes the freed emulator.
Emulators live in a per-game pool and are reset, never reloaded.

**Processes, not threads.** ale-py 0.12.1 does not release the GIL in ``act()`` or
``getScreen()`` (a thread waiting for the GIL while another calls ``act()`` in a loop waits a full
switch interval, exactly as behind pure Python code), so threads cannot step two emulators at
once: one call steps its emulators one after another. Processes can:
:mod:`agents.atari.workers` spreads a call's episodes over worker processes (``first_episode``
keeps each episode's seed whichever process plays it).
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agents import Progress
from agents.atari.games import (
    FRAMESKIP,
    N_ACTIONS,
    SCREEN_HEIGHT,
    SCREEN_WIDTH,
    Game,
    actions_from_outputs,
    new_emulator,
)
from agents.atari.substrate import Substrate, substrate_for

STICKY = 0.25
"""Per-frame probability of repeating the previous action (``ALE/<Game>-v5``; the paper's ε)."""
DEFAULT_EMULATORS = 32
"""Emulators stepped in lock-step by default: fewer leave the per-step policy call and substrate
set-up unamortised, more gain nothing (the batch's screens and comparison images outgrow the
caches), and each new emulator costs a ROM load on first use in a process (measurements:
``benchmarks/README.md``)."""

Policy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``policy(observations (k, n_inputs) float32, slots (k,) int64) -> (k, 10)``; optionally with
``reset(n_episodes)``, called before the first step."""


@dataclass
class EpisodeResults:
    """What one :func:`evaluate` (or :func:`raw_ale`) call measured."""

    game: Game
    scores: np.ndarray  # (n_episodes,) float64: raw game score per episode
    frames: np.ndarray  # (n_episodes,) int64: emulator frames per episode (4 per agent step)
    total_frames: int
    wall_s: float  # the lock-step loop, without fetching emulators
    steps_per_s: float  # agent steps (of 4 frames) per wall second
    emulators: int  # episodes run at once
    setup_s: float = 0.0  # fetching (on first use: loading) emulators
    seconds: dict[str, float] = field(default_factory=dict)  # where wall_s went (episode_starts: resets)

    @property
    def stepping_steps_per_s(self) -> float:
        """Agent steps per second of the loop without starting episodes (they once cost
        many steps' worth): comparable between loops whose episodes end at different times."""
        stepping = self.wall_s - self.seconds.get("episode_starts", 0.0)
        return self.total_frames / FRAMESKIP / stepping if stepping > 0 else 0.0


# --------------------------------------------------------------------------------------------
# The emulator pool


_POOL: dict[Game, list[Any]] = {}
_POOL_LOCK = threading.Lock()


def acquire_emulators(game: Game, n: int) -> list[Any]:
    """``n`` emulators of ``game`` for exclusive use: idle pooled ones first, new ones for the
    rest. All emulators have the same settings (:func:`agents.atari.games.new_emulator`), so the
    pool is keyed by game only. Give them back with :func:`release_emulators`."""
    with _POOL_LOCK:
        idle = _POOL.setdefault(game, [])
        taken = [idle.pop() for _ in range(min(n, len(idle)))]
    return taken + [new_emulator(game) for _ in range(n - len(taken))]


def release_emulators(game: Game, emulators: list[Any]) -> None:
    """Return emulators to the pool (they are reset before their next episode)."""
    with _POOL_LOCK:
        _POOL.setdefault(game, []).extend(emulators)


_START: dict[Game, tuple[Any, np.ndarray]] = {}  # per game: the state episodes start from, its screen


def start_episode(game: Game, ale: Any, screen: np.ndarray) -> None:
    """Put ``ale`` (an emulator of ``game``) in the state every episode starts from, a freshly
    loaded emulator's after ``reset_game()`` (cloned once per game and process, its random
    generator included), and write that state's palette screen into ``screen`` (restoring a
    state leaves the emulator's screen as it was; the next frame draws it anew). Restoring takes
    about 30 µs, ``reset_game()`` about 16 ms."""
    with _POOL_LOCK:
        if game not in _START:
            fresh = new_emulator(game)
            fresh.reset_game()
            _START[game] = fresh.cloneState(include_rng=True), fresh.getScreen()
        state, first = _START[game]
    ale.restoreState(state)
    screen[...] = first


def drop_emulators() -> None:
    """Let every pooled emulator go (before a process ends: ale-py's bindings complain on stderr
    about emulators still alive when the interpreter finalizes)."""
    with _POOL_LOCK:
        _POOL.clear()
        _START.clear()


atexit.register(drop_emulators)  # in every process that pools emulators, workers included


def warm_pool(game: Game, n: int) -> None:
    """Load ``n`` emulators of ``game`` ahead of time (so a timed run does not pay ROM loads)."""
    release_emulators(game, acquire_emulators(game, n))


# --------------------------------------------------------------------------------------------
# Sticky actions


def sticky_delays(rng: np.random.Generator, steps: int, sticky: float) -> np.ndarray:
    """For each agent step, how many of its 4 frames still execute the previous action (0–4).

    ALE draws ``u ~ U[0, 1)`` per frame and switches to the new action when ``u >= sticky``;
    once switched it stays switched (the previous action now is the new one). So the previous
    action persists for the frames before the first switch: ``P(delay >= d) = sticky ** d``.
    """
    keep = rng.random((steps, FRAMESKIP)) < sticky
    return np.where(keep.all(axis=1), FRAMESKIP, keep.argmin(axis=1)).astype(np.int8)


# --------------------------------------------------------------------------------------------
# Evaluation


def _check(n_episodes: int, max_frames: int, sticky: float, emulators: int | None) -> None:
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if max_frames < FRAMESKIP:
        raise ValueError(f"max_frames must be >= {FRAMESKIP} (one agent step), got {max_frames}")
    if not 0.0 <= sticky <= 1.0:
        raise ValueError(f"sticky must be in [0, 1], got {sticky}")
    if emulators is not None and emulators < 1:
        raise ValueError(f"emulators must be >= 1, got {emulators}")


class _Episodes:
    """Book-keeping of one call's episodes. Row ``r`` of the lock-step batch is emulator
    ``running[r]``, whose current screen is ``screens[r]`` (copied right after its step, while
    it is hot in cache); a finished emulator with no episode left is swap-removed, so the batch
    stays compact. Per-emulator state is in plain lists: it is read per emulator and step."""

    def __init__(
        self,
        game: Game,
        ales: list[Any],
        n_episodes: int,
        max_steps: int,
        seed: int,
        sticky: float,
        first_episode: int = 0,
    ) -> None:
        self.game, self.ales, self.n_episodes, self.max_steps = game, ales, n_episodes, max_steps
        self.seed, self.sticky, self.first_episode = seed, sticky, first_episode
        self.episode = [-1] * len(ales)
        self.step = [0] * len(ales)
        self.score = [0.0] * len(ales)
        self.prev = [0] * len(ales)  # the executed action; ALE resets it to NOOP
        self.delays: list[list[int]] = [[] for _ in ales]
        self.scores = np.zeros(n_episodes, np.float64)
        self.frames = np.zeros(n_episodes, np.int64)
        self.next_episode = 0
        self.start_s = 0.0  # time spent starting episodes (start state, first screen, sticky draws)
        self.screens = np.empty((len(ales), SCREEN_HEIGHT, SCREEN_WIDTH), np.uint8)
        self.running = [env for env in range(len(ales)) if self._start(env, env)]

    def _start(self, env: int, row: int) -> bool:
        """Start the next waiting episode on emulator ``env`` (batch row ``row``); False if none
        is left."""
        if self.next_episode >= self.n_episodes:
            return False
        started = time.perf_counter()
        episode = self.next_episode
        self.next_episode += 1
        start_episode(self.game, self.ales[env], self.screens[row])
        rng = np.random.default_rng([self.seed, self.first_episode + episode])
        self.delays[env] = sticky_delays(rng, self.max_steps, self.sticky).tolist()
        self.episode[env], self.step[env], self.score[env], self.prev[env] = episode, 0, 0.0, 0
        self.start_s += time.perf_counter() - started
        return True

    def emulate(self, actions: list[int]) -> list[int]:
        """One agent step (4 frames, sticky) of every running emulator (``actions`` per row of
        the batch); returns the rows whose episode ended."""
        ended = []
        ales, running, screens = self.ales, self.running, self.screens
        step, score, prev, delays = self.step, self.score, self.prev, self.delays
        for row in range(len(running)):
            env, action = running[row], actions[row]
            ale, t, previous = ales[env], step[env], prev[env]
            delay = delays[env][t]
            reward = 0
            for frame in range(FRAMESKIP):
                reward += ale.act(previous if frame < delay else action)
            if delay < FRAMESKIP:
                prev[env] = action
            score[env] += reward
            step[env] = t + 1
            ale.getScreen(screens[row])
            if t + 1 >= self.max_steps or ale.game_over():
                ended.append(row)
        return ended

    def advance(self, ended: list[int]) -> None:
        """Record the ended rows' episodes; start waiting ones in their place, else drop the rows."""
        for row in sorted(ended, reverse=True):  # swap-removal only moves rows behind ``row``
            env = self.running[row]
            self.scores[self.episode[env]] = self.score[env]
            self.frames[self.episode[env]] = self.step[env] * FRAMESKIP
            if not self._start(env, row):
                last = len(self.running) - 1
                self.running[row] = self.running[last]
                self.screens[row] = self.screens[last]
                self.running.pop()


def evaluate(
    game: Game,
    policy: Policy,
    n_episodes: int,
    *,
    max_frames: int,
    seed: int,
    sticky: float = STICKY,
    emulators: int | None = None,
    first_episode: int = 0,
    device: torch.device = torch.device("cpu"),
    substrate: Substrate | None = None,
    progress: Progress | None = None,
) -> EpisodeResults:
    """Run ``n_episodes`` episodes of ``game`` under ``policy`` in lock-step (conventions: see
    the module docstring). ``policy.reset(n_episodes)`` is called first if it exists; then once
    per step ``policy(observations, slots)`` with every running episode (``slots`` = episode
    indices 0..n_episodes-1, to index per-episode recurrent state). ``emulators`` caps the
    episodes run at once; episode ``e`` draws
    its sticky actions as episode ``first_episode + e`` of ``seed``; observations and
    slots are put on ``device``; ``substrate`` overrides the game's default inputs; ``progress``
    hears a ``phase`` of ``n_episodes`` and an ``episode`` event as each one ends."""
    _check(n_episodes, max_frames, sticky, emulators)
    substrate = substrate or substrate_for(game)
    n_envs = min(n_episodes, emulators or DEFAULT_EMULATORS)
    if hasattr(policy, "reset"):
        policy.reset(n_episodes)

    setup_start = time.perf_counter()
    ales = acquire_emulators(game, n_envs)
    try:
        setup_s = time.perf_counter() - setup_start
        start = time.perf_counter()
        book = _Episodes(game, ales, n_episodes, max_frames // FRAMESKIP, seed, sticky, first_episode)
        t_observe = t_policy = t_emulate = 0.0
        slots: torch.Tensor | None = None
        finished = 0
        if progress is not None:
            progress("phase", name=f"{game.rom} episodes", total=n_episodes)
        while book.running:
            t0 = time.perf_counter()
            k = len(book.running)
            observations = torch.from_numpy(substrate(book.screens[:k])).to(device)
            t1 = time.perf_counter()
            if slots is None:
                slots = torch.tensor([book.episode[env] for env in book.running], dtype=torch.int64).to(
                    device
                )
            with torch.no_grad():
                actions = actions_from_outputs(policy(observations, slots)).tolist()
            t2 = time.perf_counter()
            ended = book.emulate(actions)
            if ended:
                book.advance(ended)
                slots = None
                finished += len(ended)
                if progress is not None:
                    progress("episode", step=finished)
            t3 = time.perf_counter()
            t_observe += t1 - t0
            t_policy += t2 - t1
            t_emulate += t3 - t2
        wall = time.perf_counter() - start
    finally:
        release_emulators(game, ales)
    total = int(book.frames.sum())
    return EpisodeResults(
        game=game,
        scores=book.scores,
        frames=book.frames,
        total_frames=total,
        wall_s=wall,
        steps_per_s=total / FRAMESKIP / wall if wall > 0 else 0.0,
        emulators=n_envs,
        setup_s=setup_s,
        seconds={
            "substrate": t_observe,
            "policy": t_policy,
            "emulate_and_screens": t_emulate - book.start_s,
            "episode_starts": book.start_s,
        },
    )


def raw_ale(
    game: Game,
    n_episodes: int,
    *,
    max_frames: int,
    seed: int,
    emulators: int | None = None,
) -> EpisodeResults:
    """The physical limit of :func:`evaluate`: the same pooled emulators, the same lock-step
    episode structure, frame cap and resets, stepped (4 frames a step) with uniform-random
    actions drawn per episode up front, and nothing else: no screens, substrate, policy or
    sticky actions."""
    _check(n_episodes, max_frames, 0.0, emulators)
    n_envs = min(n_episodes, emulators or DEFAULT_EMULATORS)
    max_steps = max_frames // FRAMESKIP
    setup_start = time.perf_counter()
    ales = acquire_emulators(game, n_envs)
    try:
        setup_s = time.perf_counter() - setup_start
        start = time.perf_counter()
        scores = np.zeros(n_episodes, np.float64)
        frames = np.zeros(n_episodes, np.int64)
        episode, step = [-1] * n_envs, [0] * n_envs
        plan: list[list[int]] = [[] for _ in range(n_envs)]
        waiting = list(range(n_episodes - 1, -1, -1))
        start_s = 0.0
        first_screen = np.empty((SCREEN_HEIGHT, SCREEN_WIDTH), np.uint8)  # the raw loop reads no screen

        def next_episode(env: int) -> bool:
            nonlocal start_s
            if not waiting:
                return False
            started = time.perf_counter()
            e = waiting.pop()
            start_episode(game, ales[env], first_screen)
            episode[env], step[env] = e, 0
            plan[env] = np.random.default_rng([seed, e]).integers(N_ACTIONS, size=max_steps).tolist()
            start_s += time.perf_counter() - started
            return True

        running = [env for env in range(n_envs) if next_episode(env)]
        while running:
            ended = []
            for env in running:
                ale, t = ales[env], step[env]
                action = plan[env][t]
                reward = 0
                for _ in range(FRAMESKIP):
                    reward += ale.act(action)
                scores[episode[env]] += reward
                step[env] = t + 1
                if t + 1 >= max_steps or ale.game_over():
                    ended.append(env)
            for env in ended:
                frames[episode[env]] = step[env] * FRAMESKIP
                if not next_episode(env):
                    running.remove(env)
        wall = time.perf_counter() - start
    finally:
        release_emulators(game, ales)
    total = int(frames.sum())
    return EpisodeResults(
        game,
        scores,
        frames,
        total,
        wall,
        total / FRAMESKIP / wall,
        n_envs,
        setup_s,
        {"episode_starts": start_s},
    )
