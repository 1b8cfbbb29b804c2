"""Atari tasks for the CLI: how they are learned (a plan, GRUSM-ESP), evaluate, play and record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import Progress
from agents.atari.agent import (
    load_network,
    replay_probe,
)
from agents.atari.games import FRAMESKIP
from agents.atari.network import BatchedPolicy, Networks
from agents.atari.play import record_episode
from agents.atari.workers import evaluate_episodes
from agents.workers import Workers
from library_store import Library
from lifelong.errors import LifelongError
from lifelong.files import check_output_file, write_file


def evaluate_atari(
    library: Library,
    name: str,
    *,
    episodes: int = 10,
    seed: int | None = None,
    max_frames: int | None = None,
    device: torch.device = torch.device("cpu"),
    progress: Progress | None = None,
    workers: Workers | None = None,
) -> dict[str, Any]:
    """Play a stored game's network: mean ± sd raw score, and the bit-exact probe check;
    ``workers`` share the episodes (the same scores)."""
    record = library.task(name)
    if record.family != "atari":
        raise LifelongError(f"task {name!r} is a {record.family} task")
    if episodes < 1:
        raise LifelongError("--episodes must be at least 1")
    network, game = load_network(library, name)
    probe = library.task_arrays(name).probe
    outputs = replay_probe(network, probe["observations"], device)
    result = evaluate_episodes(
        workers or Workers(0),
        game,
        network,
        episodes,
        max_frames=max_frames or record.details["budget"]["max_frames"],
        seed=record.details["eval_seed"] if seed is None else seed,
        device=device,
        progress=progress,
    )
    scores = result.scores
    return {
        "task": name,
        "game": game.rom,
        "episodes": episodes,
        "score_mean": float(scores.mean()),
        "score_sd": float(scores.std(ddof=1)) if episodes > 1 else 0.0,
        "scores": [float(s) for s in scores],
        "stored_eval_score_mean": record.metrics.get("eval_score_mean"),
        "probe_outputs_identical": bool(np.array_equal(outputs, probe["outputs"])),
        "frames": int(result.total_frames),
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
    frames_played = (len(frames) - 1) * FRAMESKIP
    return {"task": name, "game": game.rom, "score": score, "frames": frames_played, "video": str(video)}


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
