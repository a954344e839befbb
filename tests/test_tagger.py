"""The CRF tagger end to end: every task and encoder, learning, checkpoints, tag.py, TensorBoard."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import scripts.tag as tag_script
from scripts.tag import load_tagger
from scripts.tag import main as tag_main
from src.data.corpora import sentences_from_text, write_conll
from src.models.components.crf import CRF
from src.models.components.tagging import SoftmaxHead
from src.train import build, train
from src.utils.checkpoint import load_model, read_checkpoint, run_config
from src.utils.errors import UserError
from tests.conftest import compose_config, quiet_trainer, run_eval, run_script

SMALL = ["data.limit_sentences=400", "data.eval_batch_size=64"]
FAST = ["trainer.fast_dev_run=true", *SMALL]


@pytest.mark.parametrize(
    ("task", "encoder", "more"),
    [
        ("cws", "char_cnn", []),
        ("cws", "bilstm", []),
        ("ner", "char_cnn", []),
        ("pos", "bilstm", []),
        ("pos", "char_cnn", ["model.word_features.char_encoder=lstm"]),
    ],
)
def test_smoke_fast_dev_run_every_task_and_encoder(
    make_cfg, task: str, encoder: str, more: list[str]
) -> None:
    cfg = make_cfg(
        "model=crf_tagger",
        "data=people_daily",
        f"data.task={task}",
        f"model/encoder={encoder}",
        *more,
        *FAST,
    )
    metrics = train(cfg)
    for key in ("train/loss", "val/loss", "val/f1", "test/f1", "test/token_acc"):
        assert math.isfinite(metrics[key]), key


def test_pos_f1_and_token_accuracy_are_the_share_of_right_tags(make_cfg) -> None:
    """POS has no spans, so its F1 is the token accuracy: both against a count of the decoded
    test tags, made here, padding left out. Catches: padded positions counted, the accuracy of
    other batches, an F1 that is some other figure."""
    datamodule, model = build(
        make_cfg("model=crf_tagger", "data=people_daily", "data.task=pos", *SMALL)
    )
    trainer = quiet_trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=3, enable_checkpointing=False
    )
    trainer.fit(model, datamodule=datamodule)  # a few steps: some tags right, not all
    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    right = total = 0
    model.eval()
    with torch.no_grad():
        for tokens, tags, mask, chars in datamodule.test_dataloader():  # POS: words, characters
            assert not mask.all()  # padding in the batch: it must not count
            right += int((model.decode(tokens, mask, chars) == tags)[mask].sum())
            total += int(mask.sum())
    assert 0 < right < total  # the figure is neither 0 nor 1
    assert metrics["test/token_acc"] == pytest.approx(right / total, abs=1e-6)
    assert metrics["test/f1"] == pytest.approx(right / total, abs=1e-6)


def test_softmax_head_and_the_crf_learning_rate(make_cfg) -> None:
    _, softmax = build(
        make_cfg("model=crf_tagger", "data=people_daily", "model.head=softmax", *SMALL)
    )
    assert isinstance(softmax.tagger.head, SoftmaxHead) and softmax.tagger.allowed is None
    assert len(softmax.configure_optimizers()["optimizer"].param_groups) == 1
    _, tagger = build(
        make_cfg("model=crf_tagger", "data=people_daily", "model.crf_lr_multiplier=50", *SMALL)
    )
    assert isinstance(tagger.tagger.head, CRF) and tagger.tags == ["B", "E", "M", "S"]
    groups = tagger.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([3e-3, 0.15])  # 50 x the model's 0.003
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in tagger.tagger.head.parameters()}


def _synthetic_ner(directory: Path, n: int, seed: int) -> Path:
    """Sentences of filler words with fixed person and place names tagged BIO."""
    rng = random.Random(seed)
    fill = [f"w{i}" for i in range(30)]
    names = {"PER": [["John", "Smith"], ["Ann"]], "LOC": [["New", "York", "City"], ["Paris"]]}
    sentences = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(2, 6)):
            if rng.random() < 0.4:
                kind = rng.choice(list(names))
                name = rng.choice(names[kind])
                tokens += name
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
            else:
                tokens.append(rng.choice(fill))
                tags.append("O")
        sentences.append((tokens, tags))
    path = directory / f"ner_{seed}.conll"
    write_conll(sentences, path)
    return path


def test_learns_a_synthetic_conll_ner_task(tmp_path: Path) -> None:
    """Learned, not perfect: over seeds 1-6 with 1 and 2 torch threads (torch 2.14.1) the test F1
    after 16 epochs was 0.988-1.0 (PER 0.981-1.0, LOC 0.989-1.0); an untrained tagger scores ~0.
    After 8 epochs it was 0.943-1.0, too close to any bound."""
    train_file, val_file = _synthetic_ner(tmp_path, 400, 0), _synthetic_ner(tmp_path, 100, 1)
    cfg = compose_config(
        [
            "model=crf_tagger",
            "data=conll",
            f"data.train_file={train_file}",
            f"data.val_file={val_file}",
            f"data.test_file={val_file}",
            "data.batch_size=16",
            "trainer.max_epochs=16",
            "logger=csv",
            "callbacks=none",
            "model.optimizer.lr=0.01",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    for key in ("test/f1", "test/f1_PER", "test/f1_LOC"):
        assert metrics[key] >= 0.95, (key, metrics)


def test_checkpoint_tags_raw_text(make_cfg, tmp_path: Path, capsys) -> None:
    """eval.py and tag.py (one run in a fresh interpreter; its other formats and its refusal in
    this one, through the same `main`)."""
    cfg = make_cfg(
        "model=crf_tagger",
        "data=people_daily",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        *SMALL,
    )
    metrics = train(cfg)
    ckpt_path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    # eval.py rebuilds the tagger from the checkpoint alone (its vocabulary is stored there)
    again = run_eval(ckpt_path, tmp_path / "eval_logs")
    assert again["val/f1"] == pytest.approx(metrics["val/f1"], abs=1e-6)
    assert ckpt["model_kwargs"]["tags"] == ["B", "E", "M", "S"]
    assert "vocab" not in ckpt["hyper_parameters"]
    text = "迈向充满希望的新世纪。我们爱和平！"
    result = run_script("scripts/tag.py", f"ckpt_path={ckpt_path}", f"text={text}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "".join(lines[0].split()) == "迈向充满希望的新世纪。"
    capsys.readouterr()
    tag_main([f"ckpt_path={ckpt_path}", f"text={text}", "format=tags"])
    pairs = [pair.split("/") for pair in capsys.readouterr().out.split()]
    assert [c for c, _ in pairs] == list(text)
    # constrained decoding: a word starts with B or S and ends with E or S
    tags = "".join(t for _, t in pairs)
    forbidden = ("BB", "BS", "MB", "MS", "EM", "EE", "SM", "SE")
    assert tags[0] in "BS" and not any(a + b in forbidden for a, b in itertools.pairwise(tags))
    with pytest.raises(SystemExit) as stopped:
        tag_main([f"ckpt_path={ckpt_path}", "--file", "nope.txt"])
    assert stopped.value.code == 2 and "nope.txt does not exist" in capsys.readouterr().err


IMPORTS = """
import json, sys
import scripts.tag as tag_script
from scripts.tag import load_tagger
tagger, _ = load_tagger(sys.argv[1])
tags = tagger.tag_sentences([list(s) for s in sys.argv[2:]])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"lightning", "torchmetrics"})
print(json.dumps({"tags": tags, "heavy": heavy}))
"""


def test_tag_py_runs_the_maths_alone_from_any_layout_and_refuses_what_is_not_a_tagger(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """tag.py builds the checkpoint's `SequenceTagger` with torch alone (neither Lightning nor
    torchmetrics is imported) and its tags are the trained CRFTagger's. A checkpoint of the
    earlier layout (weights not under `tagger.`) loads both ways; a config whose model is no
    tagger, or whose encoder names a stranger's class, is refused."""
    cfg = make_cfg(
        "model=crf_tagger",
        "data=people_daily",
        "data.task=ner",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        *SMALL,
    )
    train(cfg)
    ckpt_path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    model = load_model(ckpt_path, run_config(ckpt_path, ckpt), read_checkpoint(ckpt_path))
    texts = ["江泽民主席在北京会见了联合国秘书长安南。", "我们爱和平！"]
    expected = model.tag_sentences([list(s) for s in texts])
    result = run_script("-c", IMPORTS, str(ckpt_path), *texts)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"tags": expected, "heavy": []}
    # precision=bf16: the networks run under bfloat16 autocast
    tagger, lowercase = load_tagger(str(ckpt_path))
    seen: list[torch.dtype] = []
    tagger.encoder.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    monkeypatch.setattr(tag_script, "load_tagger", lambda path: (tagger, lowercase))
    capsys.readouterr()  # the training's output
    for precision, dtype in (("bf16", torch.bfloat16), ("32", torch.float32)):
        tag_main([f"ckpt_path={ckpt_path}", f"text={texts[0]}", f"precision={precision}"])
        assert seen.pop() == dtype and not seen
        assert len(capsys.readouterr().out.splitlines()) == 1
    with pytest.raises(SystemExit) as stopped:
        tag_main([f"ckpt_path={ckpt_path}", "text=x", "precision=16"])
    assert "precision=16: use 32 or bf16." in capsys.readouterr().err and stopped.value.code == 2

    earlier = tmp_path / "checkpoints" / "earlier.ckpt"
    layout = {name.removeprefix("tagger."): w for name, w in ckpt["state_dict"].items()}
    assert len(layout) == len(ckpt["state_dict"]) and "encoder.embedding.weight" in layout
    torch.save({**ckpt, "state_dict": layout}, earlier)
    assert load_tagger(str(earlier))[0].tag_sentences([list(s) for s in texts]) == expected
    again = load_model(earlier, run_config(earlier, ckpt), read_checkpoint(earlier))
    assert again.tag_sentences([list(s) for s in texts]) == expected

    bare = tmp_path / "bare"
    bare.mkdir()
    pwned = tmp_path / "PWNED"
    stranger = {"_target_": "pathlib.Path.write_text", "_args_": [str(pwned), "x"]}
    for key, value, refusal in [
        ("_target_", "src.models.vae.VAE", "is 'src.models.vae.VAE', not a tagger: refused"),
        ("encoder", stranger, "model.encoder._target_='pathlib.Path.write_text' is refused"),
    ]:
        crafted = {**ckpt, "run_config": {**ckpt["run_config"]}}
        crafted["run_config"]["model"] = {**ckpt["run_config"]["model"], key: value}
        torch.save(crafted, bare / "crafted.ckpt")
        with pytest.raises(UserError, match=re.escape(refusal)):
            load_tagger(str(bare / "crafted.ckpt"))
    assert not pwned.exists()


def test_tensorboard_gets_examples_and_the_transition_heatmap(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "model=crf_tagger",
        "data=people_daily",
        "data.task=ner",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        *SMALL,
    )
    train(cfg)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "val/transitions" in events.Tags()["images"]
    assert {"val/f1", "val/precision", "val/recall", "val/token_acc"} <= set(
        events.Tags()["scalars"]
    )
    texts = [t for t in events.Tags()["tensors"] if t.startswith("val/examples")]
    assert texts
    table = events.Tensors(texts[0])[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| gold | predicted |") and table.count("\n") == 9


def test_a_tagger_needs_tagging_data_and_a_tagging_loss(make_cfg) -> None:
    with pytest.raises(UserError, match="does not fit CRFTagger, which needs a 'tagging' loss"):
        build(make_cfg("model=crf_tagger", "data=people_daily", "loss=bernoulli", *SMALL))
    with pytest.raises(UserError, match="does not fit VAE"):
        build(make_cfg("model=vae", "loss=tag_nll"))
    with pytest.raises(UserError, match="vocabulary and tags from a tagging data module"):
        build(make_cfg("model=crf_tagger", "data=fashion_mnist"))


@pytest.mark.parametrize("word_level", [True, False])
def test_a_conll_corpus_of_words_or_of_characters_reads_raw_text_its_own_way(
    tmp_path: Path, word_level: bool
) -> None:
    """One owner decides whether tokens are words: the data, from the training tokens. A CoNLL
    file of characters (Chinese NER in CoNLL form) gets a character tagger, which cuts raw text
    into characters and prints it unspaced; a file of words, whitespace words and spaced text."""
    if word_level:
        sentences = [(["John", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"])] * 4
    else:
        sentences = [(list("张三住在北京"), ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"])] * 4
    path = tmp_path / "corpus.conll"
    write_conll(sentences, path)
    cfg = compose_config(
        [
            "model=crf_tagger",
            "data=conll",
            *(f"data.{split}_file={path}" for split in ("train", "val", "test")),
        ],
        tmp_path / "run",
    )
    _, model = build(cfg)
    assert model.word_level is word_level
    raw = "John lives in Paris" if word_level else "张三 住在北京"
    (tokens,) = sentences_from_text(raw, model.word_level)
    assert tokens == sentences[0][0]
    shown = model.format(tokens, sentences[0][1])
    assert shown == ("[John]PER lives in [Paris]LOC" if word_level else "[张三]PER住在[北京]LOC")
