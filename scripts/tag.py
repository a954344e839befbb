"""Segment or tag raw text with a trained tagger checkpoint.

    python scripts/tag.py ckpt_path=<run_dir>/checkpoints/last.ckpt text="迈向充满希望的新世纪。"
    python scripts/tag.py ckpt_path=... --file input.txt          (or file=input.txt)
    python scripts/tag.py ckpt_path=... text=... format=tags       (token/TAG pairs)

Text is cut into sentences after 。！？ and each line separately, and read the way the model was
trained (characters for cws/ner, whitespace-separated words for pos and CoNLL). One output line
per sentence: segmented words (cws), [entities]TYPE (ner), word/TAG (pos), or with
`format=tags` every token with its tag.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = {"ckpt_path": "???", "text": None, "file": None, "format": "text"}


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


def main(argv: list[str]) -> None:
    import os

    from src.data.corpora import sentences_from_text
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
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise UserError(
                    f"--file {path} is not UTF-8 text (byte {err.start}: {err.reason}); convert "
                    "it, e.g. iconv -f GB18030 -t UTF-8."
                ) from None
        else:
            text = str(args["text"])
        ckpt = read_checkpoint(args["ckpt_path"])
        cfg = run_config(args["ckpt_path"], ckpt)
        model = load_model(args["ckpt_path"], cfg, ckpt)
        if not isinstance(model, CRFTagger):
            raise UserError(f"{args['ckpt_path']} holds a {type(model).__name__}, not a tagger.")
        task = cfg.data.get("task", "conll")
        sentences = sentences_from_text(text, task)
        if cfg.data.get("lowercase"):
            sentences = [[token.lower() for token in s] for s in sentences]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for tokens, tags in zip(sentences, model.tag_sentences(sentences), strict=True):
        if args["format"] == "tags":
            print(" ".join(f"{token}/{tag}" for token, tag in zip(tokens, tags, strict=True)))
        else:
            print(model.format(tokens, tags))


if __name__ == "__main__":
    main(sys.argv[1:])
