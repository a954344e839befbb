"""Segment or tag raw text with a trained tagger checkpoint.

    python scripts/tag.py ckpt_path=<run_dir>/checkpoints/last.ckpt text="迈向充满希望的新世纪。"
    python scripts/tag.py ckpt_path=... --file input.txt          (or file=input.txt)
    python scripts/tag.py ckpt_path=... text=... format=tags       (token/TAG pairs)
    python scripts/tag.py ckpt_path=... --file input.txt precision=bf16   (faster on CPUs with bf16)

Text is cut into sentences after 。！？ and each line separately, and read the way the model was
trained (characters for cws/ner, whitespace-separated words for pos and CoNLL). One output line
per sentence: segmented words (cws), [entities]TYPE (ner), word/TAG (pos), or with
`format=tags` every token with its tag.

A file streams: it is read a line at a time, `window` sentences at once (default 2048) are sorted
by length and tagged in batches of `batch_size` (default 64), and their lines are written in input
order before the next window is read, so memory stays bounded whatever the file's size.
`precision=bf16` runs the networks under bfloat16 autocast (the CRF decodes in float32): about 1.2x
the characters per second of a whole command on a CPU with AVX-512 BF16, with a few tags in ten
thousand changed (docs/models/crf_tagger.md).

The checkpoint's tagger is built as the plain torch module of its maths
(`src.models.components.sequence_tagger.SequenceTagger`), without Lightning or a Trainer, whose
import would be most of a short job's time.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from src.models.components.sequence_tagger import SequenceTagger

TAGGER = "src.models.crf_tagger.CRFTagger"
MATHS = "src.models.components.sequence_tagger.SequenceTagger"
# what of the model's config the maths takes: the networks it builds, and its settings
PARTS = ("encoder", "word_features", "char_bigrams")
SETTINGS = ("head", "start_end", "crf_lr_multiplier", "constrained")

DEFAULTS = {
    "ckpt_path": "???",
    "text": None,
    "file": None,
    "format": "text",
    "precision": "32",
    "window": 2048,
    "batch_size": 64,
}


def parse_args(argv: list[str]) -> dict:
    from src.utils.errors import UserError
    from src.utils.script_args import parse_key_values

    argv = list(argv)
    if "--file" in argv:
        i = argv.index("--file")
        if i + 1 >= len(argv):
            raise UserError("--file needs a path: --file input.txt")
        argv[i : i + 2] = [f"file={argv[i + 1]}"]
    args = OmegaConf.to_container(parse_key_values(argv, DEFAULTS, "tag.py"))
    if (args["text"] is None) == (args["file"] is None):
        raise UserError('give the input as text="..." or as --file <path> (one of the two).')
    if args["format"] not in ("text", "tags"):
        raise UserError(f"format={args['format']}: use text or tags.")
    args["precision"] = str(args["precision"])
    if args["precision"] not in ("32", "bf16"):
        raise UserError(f"precision={args['precision']}: use 32 or bf16.")
    return args


def lines_of(path: Path) -> Iterator[str]:
    """The file's lines, read and decoded one at a time; a line that is not UTF-8 stops with its
    number."""
    from src.utils.errors import UserError

    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(
                    f"--file {path} is not UTF-8 text (line {number}: {err.reason}); convert it, "
                    "e.g. iconv -f GB18030 -t UTF-8."
                ) from None


def tag_stream(
    tag: Callable[[list[list[str]]], list[list[str]]],
    sentences: Iterable[list[str]],
    window: int,
    batch_size: int,
) -> Iterator[tuple[list[str], list[str]]]:
    """(tokens, tags) of every sentence, in input order: `window` sentences at a time, tagged in
    batches of `batch_size` sentences of similar length (little padding)."""
    iterator = iter(sentences)
    while chunk := list(itertools.islice(iterator, window)):
        order = sorted(range(len(chunk)), key=lambda i: len(chunk[i]))
        tagged: list[list[str]] = [[] for _ in chunk]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            for i, tags in zip(batch, tag([chunk[i] for i in batch]), strict=True):
                tagged[i] = tags
        yield from zip(chunk, tagged, strict=True)


def load_tagger(ckpt_path: str) -> tuple[SequenceTagger, bool]:
    """The checkpoint's tagger as its maths, a `SequenceTagger` with its weights (built with torch
    alone; only the config's networks are checked and built), and whether its data lowercased."""
    from src.models.components.sequence_tagger import tagger_weights
    from src.utils.checkpoint import read_checkpoint, run_config
    from src.utils.config import check_types
    from src.utils.errors import UserError, shown
    from src.utils.instantiate import instantiate

    networks = [f"model.{part}" for part in PARTS]
    ckpt = read_checkpoint(ckpt_path, groups=networks)
    cfg = run_config(ckpt_path, ckpt, groups=networks)
    target = OmegaConf.select(cfg, "model._target_")
    if target != TAGGER:
        raise UserError(
            f"{ckpt_path}: the model of its run config (run_config, or .hydra/config.yaml beside "
            f"it) is {shown(target)}, not a tagger: refused (tag.py builds only {TAGGER})."
        )
    nodes = {key: cfg.model[key] for key in (*PARTS, *SETTINGS) if key in cfg.model}
    maths = OmegaConf.create({"_target_": MATHS, **nodes})
    check_types(maths, "model")
    tagger = instantiate(maths, **ckpt.get("model_kwargs", {}))
    try:
        tagger.load_state_dict(tagger_weights(ckpt["state_dict"]))
    except RuntimeError as err:
        raise UserError(
            f"{ckpt_path} does not fit the run's model config ({str(err).splitlines()[0]}). "
            "Was the config edited after training?"
        ) from None
    return tagger.eval(), bool(cfg.data.get("lowercase"))


def main(argv: list[str]) -> None:
    import os

    import torch

    from src.data.corpora import sentences_from_lines
    from src.utils.errors import UserError

    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    try:
        args = parse_args(argv)
        if args["file"] is not None:
            path = Path(args["file"])
            if not path.is_file():
                raise UserError(f"--file {path} does not exist.")
            lines: Iterable[str] = lines_of(path)
            first = next(lines, None)  # a file in another encoding stops before the model loads
            lines = iter(()) if first is None else itertools.chain([first], lines)
        else:
            lines = str(args["text"]).splitlines()
        if int(args["window"]) < 1 or int(args["batch_size"]) < 1:
            raise UserError(
                f"window={args['window']} and batch_size={args['batch_size']} must be at least 1."
            )
        tagger, lowercase = load_tagger(args["ckpt_path"])
        sentences = sentences_from_lines(lines, tagger.word_level)
        if lowercase:
            sentences = ([token.lower() for token in s] for s in sentences)
        tagged = tag_stream(tagger.tag_sentences, sentences, args["window"], args["batch_size"])
        bf16 = args["precision"] == "bf16"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for tokens, tags in tagged:
                if args["format"] == "tags":
                    pairs = zip(tokens, tags, strict=True)
                    print(" ".join(f"{token}/{tag}" for token, tag in pairs))
                else:
                    print(tagger.format(tokens, tags))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
