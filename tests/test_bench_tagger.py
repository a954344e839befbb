"""`scripts/bench_tagger.py` runs end to end on a tiny CoNLL corpus (a smoke test of the benchmark,
not of its figures), and its scorer counts as the framework's test metric counts."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from scripts.bench_tag_cli import main as bench_cli
from scripts.bench_tagger import char_template, lookup, main, score, word_template
from src.data.corpora import write_conll
from src.train import train


def test_the_benchmark_runs_on_a_tiny_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = random.Random(0)
    words = {"dogs": "N", "bark": "V", "cats": "N", "purr": "V", "loudly": "A"}
    sentences = []
    for _ in range(40):
        chosen = rng.choices(list(words), k=rng.randint(2, 6))
        sentences.append((chosen, [words[w] for w in chosen]))
    train, test = tmp_path / "train.conll", tmp_path / "test.conll"
    write_conll(sentences[:30], train)
    write_conll(sentences[30:], test)
    args = ["--train-file", str(train), "--test-file", str(test), "--max-epochs", "2"]
    assert main([*args, "--budget", "20", "--crf-iterations", "5"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| conll")]
    labels = [line.split(" | ")[1] for line in table]
    assert labels[0].startswith("python-crfsuite") and labels[1].startswith("framework (")
    assert labels[2] == "framework, precision=bf16" and labels[3].startswith(
        "framework, ids only ("
    )
    assert labels[4] == "framework, ids only, precision=bf16" and len(table) == 6
    lookup_accuracy = float(table[5].split(" | ")[2])
    assert lookup_accuracy == 1.0  # every test word is a training word with one tag


def test_the_scorer_is_span_f1_or_token_accuracy() -> None:
    gold = [(["a", "b", "c"], ["B-X", "I-X", "O"]), (["d"], ["B-Y"])]
    predicted = [["B-X", "I-X", "O"], ["O"]]
    assert score(gold, predicted, ["O", "B-X", "I-X"], "BIO") == pytest.approx(2 / 3)  # p 1, r 1/2
    assert score(gold, predicted, ["O", "B-X", "I-X"], None) == pytest.approx(3 / 4)
    assert lookup([(["a", "a", "b"], ["N", "V", "N"]), (["a"], ["N"])])([["a", "z"]]) == [
        ["N", "N"]
    ]


def test_the_crfsuite_templates() -> None:
    assert char_template(list("abc"), 0) == [
        "bias", "c[-2]=<s>", "c[-1]=<s>", "c[0]=a", "c[1]=b", "c[2]=c",
        "c[-2]c[-1]=<s><s>", "c[-1]c[0]=<s>a", "c[0]c[1]=ab", "c[1]c[2]=bc", "c[-1]c[1]=<s>b",
    ]  # fmt: skip
    features = word_template(["The", "Dogs", "barked"], 1)
    for expected in ("w=dogs", "p2=Do", "s3=ogs", "title=True", "w[-1]=the", "w[2]=<s>"):
        assert expected in features


@pytest.mark.slow
def test_the_command_line_benchmark_runs(make_cfg, tmp_path: Path, capsys) -> None:
    """`scripts/bench_tag_cli.py` times jieba's and tag.py's commands on a tiny file (a smoke test
    of the script, not of its figures)."""
    train(
        make_cfg(
            "model=crf_tagger",
            "data=people_daily",
            "data.limit_sentences=300",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "test=false",
        )
    )
    text = tmp_path / "in.txt"
    text.write_text("迈向充满希望的新世纪。\n我们爱和平！\n", encoding="utf-8")
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert bench_cli([str(ckpt), "--file", str(text), "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    names = [row.split(" | ")[0] for row in rows[1:]]
    assert names[-2:] == ["| tag.py", "| tag.py precision=bf16"]
    if importlib.util.find_spec("jieba") is None:  # the bench extra is not installed
        assert len(names) == 2 and rows[1].split(" | ")[3] == "nanx"
    else:
        assert names[0] == "| jieba" and rows[1].split(" | ")[3] == "1.00x"
