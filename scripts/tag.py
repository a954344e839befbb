"""Segment or tag raw text with a trained tagger checkpoint.

    python scripts/tag.py ckpt_path=<run_dir>/checkpoints/last.ckpt text="迈向充满希望的新世纪。"
    python scripts/tag.py ckpt_path=... --file input.txt          (or file=input.txt)
    python scripts/tag.py ckpt_path=... text=... format=tags       (token/TAG pairs)

Text is cut into sentences after 。！？ and each line separately, and read the way the model was
trained (characters for cws/ner, whitespace-separated words for pos and CoNLL). One output line
per sentence: segmented words (cws), [entities]TYPE (ner), word/TAG (pos), or with
`format=tags` every token with its tag.

A file streams: it is read a line at a time, `window` sentences at once (default 2048) are sorted
by length and tagged in batches of `batch_size` (default 64), and their lines are written in input
order before the next window is read, so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = {
    "ckpt_path": "???",
    "text": None,
    "file": None,
    "format": "text",
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


def main(argv: list[str]) -> None:
    import os

    from src.data.corpora import sentences_from_lines
    from src.models.crf_tagger import CRFTagger
    from src.utils.checkpoint import load_model, read_checkpoint, run_config
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
        ckpt = read_checkpoint(args["ckpt_path"])
        cfg = run_config(args["ckpt_path"], ckpt)
        model = load_model(args["ckpt_path"], cfg, ckpt)
        if not isinstance(model, CRFTagger):
            raise UserError(f"{args['ckpt_path']} holds a {type(model).__name__}, not a tagger.")
        sentences = sentences_from_lines(lines, model.word_level)
        if cfg.data.get("lowercase"):
            sentences = ([token.lower() for token in s] for s in sentences)
        tagged = tag_stream(model.tag_sentences, sentences, args["window"], args["batch_size"])
        for tokens, tags in tagged:
            if args["format"] == "tags":
                print(" ".join(f"{token}/{tag}" for token, tag in zip(tokens, tags, strict=True)))
            else:
                print(model.format(tokens, tags))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
