"""What the CLI asks of Atari tasks: learn (GRUSM-ESP), evaluate, play and record."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents import Report
from agents.atari.agent import CONDITIONS, AtariAgent, choose_sources, load_network, replay_probe
from agents.atari.budget import ATARI_PRESETS, AtariBudget
from agents.atari.esp import BatchedPolicy, Networks
from agents.atari.evaluate import evaluate
from agents.atari.games import GameError, resolve_game
from agents.atari.play import record_episode
from library_store import Library, TaskRecord, task_key
from lifelong.device import resolve_device
from lifelong.errors import LifelongError, TaskSpecError
from lifelong.files import check_output_file, write_file
from lifelong.learn import learn
from lifelong.tasks import TaskSpec


def atari_budget(preset: str, **overrides: Any) -> AtariBudget:
    if preset not in ATARI_PRESETS:
        raise LifelongError(f"unknown budget {preset!r} (choose {', '.join(ATARI_PRESETS)})")
    budget = ATARI_PRESETS[preset].override(**overrides)
    for name in (
        "generations",
        "evaluations",
        "trials",
        "max_frames",
        "members",
        "stagnation",
        "eval_episodes",
    ):
        if getattr(budget, name) < 1:
            raise LifelongError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= budget.self_organize_share <= 1:
        raise LifelongError("--self-organize-share must lie in [0, 1]")
    return budget


def check_atari_task(
    library: Library,
    spec: TaskSpec,
    *,
    sources: str,
    condition: str,
    checkpoint_every: int,
    learned_before: Sequence[str] = (),
) -> str:
    """Check an Atari task's game and options before any work; return the game's ALE name.
    ``learned_before``: tasks of the same call, learned first, that ``--sources`` may name."""
    if condition not in CONDITIONS:
        raise LifelongError(f"unknown --condition {condition!r} (choose {', '.join(CONDITIONS)})")
    if checkpoint_every < 0:
        raise LifelongError("--checkpoint-every must be 0 (never) or more")
    try:
        game = resolve_game(spec.game or "")
    except GameError as error:
        raise TaskSpecError(str(error)) from None
    listed = [item for item in sources.split(",") if item not in learned_before]
    if sources in ("auto", "none") or listed:
        choose_sources(library, sources if sources in ("auto", "none") else ",".join(listed), game)
    return game


def learn_atari(
    library: Library,
    spec: TaskSpec,
    *,
    name: str | None = None,
    budget: AtariBudget,
    target: float | None = None,
    seed: int = 0,
    device: str = "auto",
    sources: str = "auto",
    condition: str = "transfer",
    report: Report | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    require_target: bool = False,
) -> TaskRecord:
    """Learn one game with GRUSM-ESP and commit its network. With ``checkpoint_every`` N, the
    evolution state is saved every N generations under ``<library>/checkpoints/``, and
    ``resume`` continues an interrupted run from there (same spec, seed, condition and budget)."""
    check_atari_task(library, spec, sources=sources, condition=condition, checkpoint_every=checkpoint_every)
    task_name = name or spec.text
    checkpoint = library.path / "checkpoints" / f"{task_key(task_name)}.pt"
    agent = AtariAgent(
        budget,
        target=target,
        seed=seed,
        device=resolve_device(device),
        sources=sources,
        condition=condition,
        report=report or (lambda *a, **k: None),
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
    )
    command = shlex.join(["lifelong", *sys.argv[1:]])
    report and report("task", name=task_name)
    record = learn(
        library, agent, spec, name=task_name, seed=seed, command=command, require_target=require_target
    )
    checkpoint.unlink(missing_ok=True)  # committed: nothing left to resume
    return record


def evaluate_atari(
    library: Library,
    name: str,
    *,
    episodes: int = 10,
    seed: int | None = None,
    max_frames: int | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Play a stored game's network: mean ± sd raw score, and the bit-exact probe check."""
    record = library.task(name)
    if record.family != "atari":
        raise LifelongError(f"task {name!r} is a {record.family} task")
    if episodes < 1:
        raise LifelongError("--episodes must be at least 1")
    network, game = load_network(library, name)
    torch_device = resolve_device(device)
    probe = library.task_arrays(name).probe
    outputs = replay_probe(network, probe["observations"], torch_device)
    policy = BatchedPolicy(Networks.stack([network]), trials=episodes, device=torch_device)
    budget = record.details["budget"]
    result = evaluate(
        game,
        policy,
        episodes,
        max_frames=max_frames or budget["max_frames"],
        seed=record.details["eval_seed"] if seed is None else seed,
        device=torch_device,
    )
    scores = result.scores
    return {
        "task": name,
        "game": game,
        "episodes": episodes,
        "score_mean": float(scores.mean()),
        "score_sd": float(scores.std(ddof=1)) if episodes > 1 else 0.0,
        "scores": [float(s) for s in scores],
        "stored_eval_score_mean": record.metrics.get("eval_score_mean"),
        "probe_outputs_identical": bool(np.array_equal(outputs, probe["outputs"])),
        "steps_per_s": result.steps_per_s,
    }


VIDEO_FPS = 15  # agent steps per second of video (a step is 4 frames of the 60 Hz console)


def play_atari(
    library: Library, name: str, video: Path, *, seed: int = 0, max_frames: int | None = None
) -> dict:
    """Play one episode with a stored network and record it (``.mp4`` H.264 or animated ``.gif``)."""
    record = library.task(name)
    if record.family != "atari":
        raise LifelongError(f"task {name!r} is a {record.family} task")
    if video.suffix.lower() not in (".mp4", ".gif"):
        raise LifelongError(f"--video must end in .mp4 or .gif (got {video.name!r})")
    check_output_file(video)
    network, game = load_network(library, name)
    frames, score = record_episode(
        game,
        BatchedPolicy(Networks.stack([network]), trials=1),
        seed=seed,
        max_frames=max_frames or record.details["budget"]["max_frames"],
    )
    writer = _write_mp4 if video.suffix.lower() == ".mp4" else _write_gif
    write_file(video, lambda path: writer(frames, path))
    return {"task": name, "game": game, "score": score, "frames": (len(frames) - 1) * 4, "video": str(video)}


def _write_gif(frames: list[np.ndarray], path: Path) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // VIDEO_FPS, loop=0)


def _write_mp4(frames: list[np.ndarray], path: Path) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
