"""The resumable training loader's randomness: the shuffle and the data noise come from seeds
indexed by position and never from torch's global RNG, and the dynamic binarisation draws each
pixel with its grey level as the probability of a 1 (`src/data/resumable.py`,
`src/data/image_datamodule.py`). The round trips of a resumed epoch are in test_guarantees.py."""

from __future__ import annotations

import pickle

import pytest
import torch

import src.data.image_datamodule as image_datamodule
from src.data.batches import TensorBatches, batch_loader
from src.data.image_datamodule import dynamic_binarisation, random_bytes
from src.data.resumable import PositionedIndices, noise_generator, position_seed
from src.data.tagging import PeopleDailyDataModule

LEVELS = torch.arange(256, dtype=torch.uint8)


def _images(n: int = 70) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator())


def _epoch(loader) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(batch) for batch in loader]


def _same(a: list[tuple[torch.Tensor, ...]], b: list[tuple[torch.Tensor, ...]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, y) for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True)
    )


def test_binarisation_follows_its_rule_on_chosen_bytes(monkeypatch) -> None:
    """Bytes chosen by the test, rich in 255s, against the rule of the docstring written out:
    catches a `<=` for a `<`, a level of the cascade dropped or compared with the wrong byte."""
    gen = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (4000,), dtype=torch.uint8, generator=gen)
    chosen = torch.randint(250, 256, (3, 4000), dtype=torch.uint8, generator=gen)
    chosen[:, :2000] = torch.randint(0, 256, (3, 2000), dtype=torch.uint8, generator=gen)
    monkeypatch.setattr(image_datamodule, "random_bytes", lambda k, shape, g: chosen[:k])
    b1, b2, b3 = chosen.long()
    g = grey.long()
    rule = (b1 < g) | ((b1 == 255) & ((b2 < g) | ((b2 == 255) & (b3 < g))))
    bits = dynamic_binarisation(grey)
    assert bits.dtype == torch.float32 and torch.equal(bits, rule.float())
    assert 0 < int(rule.sum()) < 4000


def test_binarisation_draws_a_one_with_the_grey_level_as_probability() -> None:
    """Every grey level g drawn 16,000 times: each frequency within 5 standard errors of g / 255,
    and their mean error within 5 of its own (the cascade's closed form is
    (g / 255)(1 - 256^-3)). Catches a threshold off by one (g / 256, (g + 1) / 256), a level of
    the cascade dropped (g / 256 + g / 65536), and biased bytes."""
    grey = LEVELS.repeat(400).view(400, 1, 16, 16)
    gen = torch.Generator().manual_seed(1)
    draws = 40
    ones = sum(dynamic_binarisation(grey, gen) for _ in range(draws)).view(-1)
    freq = torch.zeros(256, dtype=torch.float64).index_add_(0, grey.view(-1).long(), ones.double())
    freq /= 400 * draws
    p = LEVELS.double() / 255
    se = (p * (1 - p) / (400 * draws)).sqrt()
    assert freq[0] == 0 and freq[255] == 1  # 256^-3 per draw: none in 16,000
    assert bool(((freq - p).abs() <= 5 * se + 1e-12).all())
    mean_se = float((se**2).sum().sqrt() / 256)
    assert abs(float((freq - p).mean())) < 5 * mean_se


def test_float_images_are_binarised_with_float_uniforms() -> None:
    gen = torch.Generator().manual_seed(2)
    probs = torch.full((200_000,), 0.3)
    bits = dynamic_binarisation(probs, gen)
    assert bits.dtype == torch.float32 and set(bits.unique().tolist()) == {0.0, 1.0}
    assert abs(float(bits.mean()) - 0.3) < 5 * (0.3 * 0.7 / 200_000) ** 0.5


def test_random_bytes_are_uniform_in_every_byte_of_a_word() -> None:
    """Each of the eight bytes of the 64-bit draws: mean 127.5 and a top bit set half the time.
    Catches `random_()` without its full range, whose words never set their top bit."""
    shape = torch.Size([40_000])
    drawn = random_bytes(2, shape, torch.Generator().manual_seed(3))
    assert drawn.shape == (2, 40_000) and drawn.dtype == torch.uint8
    by_position = drawn.reshape(-1, 8).double()  # (words, byte of the word)
    n = len(by_position)
    assert bool(((by_position.mean(0) - 127.5).abs() < 5 * 73.9 / n**0.5).all())
    top = (by_position >= 128).double().mean(0)
    assert bool(((top - 0.5).abs() < 5 * 0.5 / n**0.5).all())
    other = random_bytes(2, shape, torch.Generator().manual_seed(4))
    assert not torch.equal(drawn, other)


def test_position_seeds_differ_by_position_and_order_and_fit_63_bits() -> None:
    words = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 2, 3), (3, 2, 1), (1, 2, 3, 0), (2**63, 5)]
    seeds = [position_seed(*w) for w in words]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert position_seed(1, 2, 3) == position_seed(1, 2, 3)
    assert position_seed(-1) == position_seed(2**64 - 1)


@pytest.mark.parametrize("which", ["images", "sentences"])
def test_the_training_loader_never_touches_the_global_rng(which: str) -> None:
    """Two epochs of each loader, its base seed given, leave the global RNG's state as it was."""
    torch.manual_seed(5)
    if which == "images":
        dataset = TensorBatches(_images(), torch.arange(70), transform=dynamic_binarisation)
        loader = batch_loader(dataset, batch_size=8, train=True)
    else:
        loader = PeopleDailyDataModule(task="cws", limit_sentences=200).train_dataloader()
    loader.base_seed = 11
    state = torch.get_rng_state()
    first, second = _epoch(loader), _epoch(loader)
    assert torch.equal(torch.get_rng_state(), state)
    assert not _same(first, second)


def test_the_data_noise_follows_the_position_whatever_the_global_seed() -> None:
    """The same base seed under two global seeds: the same shuffle and the same binarised pixels
    batch for batch; another base seed: another epoch."""
    images = _images()
    epochs = []
    for global_seed, base in ((0, 7), (99, 7), (0, 8)):
        torch.manual_seed(global_seed)
        dataset = TensorBatches(images, torch.arange(70), transform=dynamic_binarisation)
        loader = batch_loader(dataset, batch_size=8, train=True)
        loader.base_seed = base
        epochs.append(_epoch(loader))
    assert _same(epochs[0], epochs[1]) and not _same(epochs[0], epochs[2])
    labels = torch.cat([y for _, y in epochs[0]])
    assert sorted(labels.tolist()) != labels.tolist() and len(labels.unique()) == 64


def test_a_given_generator_sets_the_shuffle_whatever_the_global_seed() -> None:
    """A loader given its sampler's generator (the toy data's) draws its base from it."""

    def labels(global_seed: int, sampler_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        gen = torch.Generator().manual_seed(sampler_seed)
        loader = batch_loader(TensorBatches(_images(), torch.arange(70)), 8, True, gen)
        return torch.cat([y for _, y in loader])

    assert torch.equal(labels(0, 3), labels(99, 3))
    assert not torch.equal(labels(0, 3), labels(0, 4))


def test_workers_draw_the_same_noise_as_the_main_process() -> None:
    """The batch's seed travels with its indices to a worker: the epoch is the same with two
    workers as with none."""
    images = _images()
    epochs = []
    for workers in (0, 2):
        dataset = TensorBatches(images, torch.arange(70), transform=dynamic_binarisation)
        loader = batch_loader(dataset, batch_size=8, train=True, num_workers=workers)
        loader.base_seed = 7
        epochs.append(_epoch(loader))
    assert _same(*epochs)


def test_a_batch_keeps_its_seed_through_pickling_and_plain_lists_have_none() -> None:
    batch = PositionedIndices([4, 1, 9])
    batch.seed = 12345
    back = pickle.loads(pickle.dumps(batch))
    assert back == [4, 1, 9] and back.seed == 12345
    drawn = torch.rand(3, generator=noise_generator(back))
    assert torch.equal(drawn, torch.rand(3, generator=torch.Generator().manual_seed(12345)))
    assert noise_generator([4, 1, 9]) is None
