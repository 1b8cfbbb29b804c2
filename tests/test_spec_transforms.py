"""Spec transforms (``~invert``, ``~rot90``, ``~permute=SEED``, ``~labels=SEED``) and per-class
training sizes (``@5pc``): parsed with the same one-line errors, applied to real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelong.errors import TaskDataError, TaskSpecError
from lifelong.task_data import check_source, load_task_data, transform_images
from lifelong.tasks import parse_spec

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "size", "per_class", "transforms"),
    [
        ("mnist:3v8~invert", None, False, ("invert",)),
        ("mnist:3v8@20~invert~permute=3", 20, False, ("invert", "permute=3")),
        ("mnist:3v8@5pc", 5, True, ()),
        ("fashion:0-4@10pc~labels=2~rot90", 10, True, ("labels=2", "rot90")),
    ],
)
def test_transforms_and_per_class_sizes_parse(
    text: str, size: int | None, per_class: bool, transforms: tuple[str, ...]
) -> None:
    spec = parse_spec(text)
    parsed = (spec.text, spec.train_size, spec.per_class, spec.transforms)
    assert parsed == (text, size, per_class, transforms)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("mnist:3v8~invrt", "unknown transform '~invrt'"),
        ("mnist:3v8~permute", "unknown transform '~permute' (known: ~invert, ~rot90, ~permute=SEED"),
        ("mnist:3v8~invert=2", "unknown transform '~invert=2'"),
        ("mnist:3v8@5pcx", "'@5pcx' must be a positive number of examples"),
        ("mnist:3v8@0pc", "'@0pc' must be a positive number"),
        ("atari:Pong~invert", "Atari tasks have none"),
    ],
)
def test_bad_transforms_are_one_line(text: str, needle: str) -> None:
    with pytest.raises(TaskSpecError) as error:
        parse_spec(text)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_a_home_path_keeps_its_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.npz").write_bytes(b"")
    spec = parse_spec("npz:~/x.npz~invert")
    assert spec.path == tmp_path / "x.npz" and spec.transforms == ("invert",)


def test_image_transforms_change_images_not_labels(data_dir: Path) -> None:
    plain = load_task_data(parse_spec("mnist:3v8@40"), data_dir=data_dir, seed=1)
    for transform, expect in (
        ("invert", lambda x: 255 - x),
        ("rot90", lambda x: torch.rot90(x, 1, dims=(2, 3))),
    ):
        changed = load_task_data(parse_spec(f"mnist:3v8@40~{transform}"), data_dir=data_dir, seed=1)
        assert torch.equal(changed.train_x, expect(plain.train_x))
        assert torch.equal(changed.test_x, expect(plain.test_x))
        assert torch.equal(changed.train_y, plain.train_y) and changed.class_names == plain.class_names


def test_permute_is_one_fixed_pixel_permutation(data_dir: Path) -> None:
    plain = load_task_data(parse_spec("mnist:3v8@40"), data_dir=data_dir, seed=1)
    first = load_task_data(parse_spec("mnist:3v8@40~permute=7"), data_dir=data_dir, seed=1)
    again = load_task_data(parse_spec("mnist:3v8@40~permute=7"), data_dir=data_dir, seed=1)
    other = load_task_data(parse_spec("mnist:3v8@40~permute=8"), data_dir=data_dir, seed=1)
    assert torch.equal(first.train_x, again.train_x) and not torch.equal(first.train_x, other.train_x)
    # the positions: where the transform sends an image whose pixels are all different
    marked = torch.arange(28 * 28).reshape(1, 1, 28, 28)
    positions = transform_images("permute=7", marked).flatten()
    assert sorted(positions.tolist()) == list(range(28 * 28)) and not torch.equal(positions, marked.flatten())
    for moved, original in ((first.train_x, plain.train_x), (first.test_x, plain.test_x)):
        assert torch.equal(moved.flatten(1), original.flatten(1)[:, positions])


def test_labels_permutation_keeps_each_image_with_its_class_name(data_dir: Path) -> None:
    plain = load_task_data(parse_spec("mnist:0-9@30"), data_dir=data_dir, seed=2)
    permuted = load_task_data(parse_spec("mnist:0-9@30~labels=5"), data_dir=data_dir, seed=2)
    assert torch.equal(permuted.train_x, plain.train_x)
    assert not torch.equal(permuted.train_y, plain.train_y)
    names = lambda data, labels: [data.class_names[k] for k in labels.tolist()]  # noqa: E731
    assert names(permuted, permuted.train_y) == names(plain, plain.train_y)
    assert names(permuted, permuted.test_y) == names(plain, plain.test_y)


def test_per_class_sizes_take_exactly_n_of_each_class(data_dir: Path) -> None:
    data = load_task_data(parse_spec("mnist:0,2,5@7pc"), data_dir=data_dir, seed=3)
    assert torch.bincount(data.train_y).tolist() == [7, 7, 7]
    assert len(data.val_y) == 1000  # the validation split is the same as without @7pc
    with pytest.raises(TaskDataError, match="asks for 7000 examples per class; class '3' has"):
        check_source(parse_spec("mnist:3v8@7000pc"), data_dir)
