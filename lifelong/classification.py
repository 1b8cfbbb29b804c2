"""Image-classification tasks for the CLI: how they are learned (a plan), evaluate, predict, export."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.classification.agent import load_task_network
from agents.classification.training import accuracy, predict_logits
from library_store import Library, TaskRecord
from lifelong.errors import LifelongError
from lifelong.files import check_output_file, write_file
from lifelong.task_data import load_task_data, read_images
from lifelong.tasks import parse_spec


def evaluate_task(
    library: Library, name: str, *, data_dir: Path | None = None, device: torch.device = torch.device("cpu")
) -> dict[str, Any]:
    """Re-evaluate a stored task on its test data and its stored probe set."""
    record = library.task(name)
    _require_classification(record)
    network = load_task_network(library, name).to(device)
    arrays = library.task_arrays(name)
    probe_x = torch.from_numpy(arrays.probe["inputs"])
    logits = predict_logits(network, probe_x, device).numpy()
    data = load_task_data(
        parse_spec(record.spec),
        data_dir=data_dir,
        input_shape=tuple(record.details["input_shape"]),
        seed=record.seed or 0,
    )
    test_acc = accuracy(network, data.test_x, data.test_y, device)
    return {
        "task": name,
        "test_acc": test_acc,
        "stored_test_acc": record.metrics.get("test_acc"),
        "test_acc_matches": test_acc == record.metrics.get("test_acc"),
        "probe_examples": len(probe_x),
        "probe_acc": float((logits.argmax(1) == arrays.probe["labels"]).mean()),
        "probe_logits_identical": bool(np.array_equal(logits, arrays.probe["logits"])),
        "probe_max_abs_diff": float(np.abs(logits - arrays.probe["logits"]).max()) if len(logits) else 0.0,
    }


def predict_files(library: Library, name: str, files: list[Path]) -> list[dict[str, Any]]:
    """Label image files with a stored task's network. Each file is read as an ``imagefolder:``
    task reads its images (:func:`lifelong.task_data.read_images`), so it scores as its twin in a
    training folder would."""
    record = library.task(name)
    _require_classification(record)
    images = read_images(files, tuple(record.details["input_shape"]), name)
    network = load_task_network(library, name)
    logits = predict_logits(network, images, torch.device("cpu"))
    probabilities = logits.softmax(1)
    names = record.details["class_names"]
    return [
        {"file": str(path), "label": int(k), "class": names[int(k)], "probability": round(float(p[k]), 4)}
        for path, k, p in zip(files, logits.argmax(1), probabilities, strict=True)
    ]


def export_task(library: Library, name: str, out: Path) -> dict[str, Any]:
    """Write the task's assembled network with ``torch.export``: ``torch.export.load(out).module()``
    runs it without lifelong installed. The batch dimension is dynamic."""
    record = library.task(name)
    _require_classification(record)
    check_output_file(out)
    network = load_task_network(library, name)
    # a batch of 2 whatever the probe holds: torch.export specializes a batch of 1 to a constant
    example = torch.zeros(2, *record.details["input_shape"])
    program = torch.export.export(network, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    # in memory first: torch's zip writer aborts the process when the disk fills up under it
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    write_file(out, lambda path: path.write_bytes(buffer.getvalue()))
    shape = ", ".join(map(str, record.details["input_shape"]))
    return {
        "task": name,
        "file": str(out),
        "load_with": "torch.export.load(file).module()",
        "input": f"float images in [0, 1], shape (N, {shape})",
        "classes": record.details["class_names"],
    }


def _require_classification(record: TaskRecord) -> None:
    if record.family != "classification":
        raise LifelongError(f"task {record.name!r} is an {record.family} task")
