"""Tag schemes: what a tag is, which tag sequences are well formed and the spans they hold.

The one owner of this grammar: the corpus readers (`src.data.tagging`) convert with it, the CRF's
allowed transitions (`src.models.components.crf`) and the span metrics (`src.metrics.spans`)
follow it. Tags are "PREFIX-TYPE" strings ("B-PER", "I-LOC") or bare prefixes ("O", and the
untyped "B", "M", "E", "S" of Chinese word segmentation, whose spans have type ""):

    BIO     a span is B-X I-X*; O outside spans
    BIOES   a span is S-X, or B-X I-X* E-X; O outside spans
    BMES    a span (a word) is S, or B M* E; every token is in one, so there is no O
    None    no spans (e.g. POS tagging)

Spans are `Span(start, end, kind)`: tokens [start, end) of type `kind`. `extract_spans` is
strict, as seqeval's mode="strict" with the IOB2 / IOBES schemes: a span counts only when it is
well formed; `lenient_spans` reads the looser tags found in corpora (IOB1, where an I-X may open
an entity) to re-tag them with `tags_from_spans`. `format_tagged` writes tagged tokens as
readable text by their spans.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from src.utils.errors import UserError, shown


class Span(NamedTuple):
    start: int
    end: int
    kind: Hashable


@dataclass(frozen=True)
class SpanRule:
    """The prefixes of one scheme: a span is `single` alone, or `begin` `inside`* [`end`]; tokens
    outside spans are `outside` (None: there are none).

    With `end` None (BIO) a span closes at the first token that does not continue it; otherwise
    it must close with an `end` tag of the same type.
    """

    begin: str
    inside: str
    end: str | None
    single: str | None
    outside: str | None

    @property
    def prefixes(self) -> set[str]:
        """Every prefix the scheme allows."""
        return {p for p in (self.outside, self.begin, self.inside, self.end, self.single) if p}

    @property
    def closing(self) -> set[str]:
        """The prefixes after which a span may start and a sequence may end."""
        open_ended = {self.begin, self.inside} if self.end is None else set()
        return open_ended | {p for p in (self.outside, self.end, self.single) if p}

    def may_follow(self, before: str, after: str) -> bool:
        """Whether tag `after` may come right after tag `before` in a well-formed sequence."""
        (prefix_a, kind_a), (prefix_b, kind_b) = parse_tag(before), parse_tag(after)
        if prefix_b in (self.inside, self.end):  # continues a span of the same type
            return prefix_a in (self.begin, self.inside) and kind_a == kind_b
        return prefix_a in self.closing

    def may_start(self, tag: str) -> bool:
        return parse_tag(tag)[0] not in (self.inside, self.end)

    def may_end(self, tag: str) -> bool:
        return parse_tag(tag)[0] in self.closing


RULES = {
    "BIO": SpanRule(begin="B", inside="I", end=None, single=None, outside="O"),
    "BIOES": SpanRule(begin="B", inside="I", end="E", single="S", outside="O"),
    "BMES": SpanRule(begin="B", inside="M", end="E", single="S", outside=None),
}


def rule(scheme: str) -> SpanRule:
    """The scheme's rule; a UserError names the schemes there are."""
    if scheme not in RULES:
        raise UserError(f"tag scheme {scheme!r} is unknown; available: {', '.join(RULES)}, None.")
    return RULES[scheme]


def parse_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) of a tag: "B-PER" -> ("B", "PER"), "O" -> ("O", ""), "S" -> ("S", "")."""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def check_scheme(tags: Sequence[str], scheme: str) -> SpanRule:
    """The scheme's rule, after a UserError naming the tags whose prefix it does not have."""
    scheme_rule = rule(scheme)
    bad = [tag for tag in tags if parse_tag(tag)[0] not in scheme_rule.prefixes]
    if bad:
        raise UserError(
            f"tags {', '.join(map(shown, bad))} do not belong to the {scheme} scheme (prefixes "
            f"{', '.join(sorted(scheme_rule.prefixes))}): check the tag scheme of the data."
        )
    return scheme_rule


def scan(parsed: Sequence[tuple[str, Hashable]], scheme_rule: SpanRule) -> list[Span]:
    """The strict spans of a sequence of (prefix, type) pairs (types of any hashable kind)."""
    spans = []
    n = len(parsed)
    i = 0
    while i < n:
        prefix, kind = parsed[i]
        if prefix == scheme_rule.single:
            spans.append(Span(i, i + 1, kind))
            i += 1
        elif prefix == scheme_rule.begin:
            inside = (scheme_rule.inside, kind)
            j = i + 1
            while j < n and parsed[j] == inside:
                j += 1
            if scheme_rule.end is None:
                spans.append(Span(i, j, kind))
            elif j < n and parsed[j] == (scheme_rule.end, kind):
                j += 1
                spans.append(Span(i, j, kind))
            i = j  # the tokens skipped are all `inside`, none of which can start a span
        else:
            i += 1
    return spans


def extract_spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """Well-formed spans of a tag sequence, in order; tags whose prefix the scheme does not know
    simply break spans."""
    return scan([parse_tag(tag) for tag in tags], rule(scheme))


def lenient_spans(tags: Sequence[str]) -> list[Span]:
    """The entities of BIO, IOB1 or BIOES tags: an I- or E- tag that does not continue an entity
    of its type starts one. ValueError names a tag that is none of these."""
    spans: list[Span] = []
    inside = False
    for i, tag in enumerate(tags):
        if tag == "O":
            inside = False
            continue
        prefix, kind = parse_tag(tag)
        if not (kind and prefix in ("B", "I", "E", "S")):
            raise ValueError(f"{shown(tag)} is not O nor B-, I-, E-, S- followed by a type")
        if prefix in ("I", "E") and inside and spans[-1].kind == kind:
            spans[-1] = spans[-1]._replace(end=i + 1)
        else:
            spans.append(Span(i, i + 1, kind))
        inside = prefix in ("B", "I")
    return spans


def tags_from_spans(length: int, spans: Sequence[Span], scheme: str) -> list[str]:
    """The BIO or BIOES tags of `length` tokens holding these entities."""
    tags = ["O"] * length
    for start, end, kind in spans:
        if scheme == "BIOES" and end - start == 1:
            tags[start] = f"S-{kind}"
            continue
        tags[start] = f"B-{kind}"
        tags[start + 1 : end] = [f"I-{kind}"] * (end - start - 1)
        if scheme == "BIOES":
            tags[end - 1] = f"E-{kind}"
    return tags


def format_tagged(
    tokens: Sequence[str], tags: Sequence[str], scheme: str | None, join: str = ""
) -> str:
    """Human-readable tagged text; every token appears exactly once, in order.

    BMES: the words separated by single spaces (the characters of a word joined by `join`,
    "/TYPE" appended for typed tags), each token of an ill-formed fragment a word of its own.
    BIO/BIOES: the tokens joined by `join` ("" for Chinese, " " for English), with every span
    marked inline as "[江泽民]PER". None: "word/TAG" pairs separated by spaces.
    """
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    if scheme is None:
        return " ".join(f"{token}/{tag}" for token, tag in zip(tokens, tags, strict=True))
    spans = {start: (kind, end) for start, end, kind in extract_spans(tags, scheme)}
    pieces = []
    i = 0
    while i < len(tokens):
        kind, end = spans.get(i, ("", i + 1))
        text = join.join(tokens[i:end])
        if scheme == "BMES":
            pieces.append(f"{text}/{kind}" if kind else text)
        else:
            pieces.append(f"[{text}]{kind}" if i in spans else text)
        i = end
    return (" " if scheme == "BMES" else join).join(pieces)
