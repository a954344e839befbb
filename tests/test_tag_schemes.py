"""The tag-scheme grammar has one owner (src/utils/tag_schemes.py): the CRF's allowed transitions
and the strict spans of the metrics must agree on which sequences are well formed, checked here
on every sequence of up to four tags."""

from __future__ import annotations

import itertools

import pytest

from src.models.components.crf import allowed_transitions
from src.utils.errors import UserError
from src.utils.tag_schemes import Span, extract_spans, lenient_spans, rule, tags_from_spans

TAGS = {
    "BIO": ["O", "B-X", "I-X", "B-Y", "I-Y"],
    "BIOES": ["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "E-Y"],
    "BMES": ["B", "M", "E", "S"],
}


def _allowed(sequence: tuple[int, ...], scheme: str) -> bool:
    mask = allowed_transitions(TAGS[scheme], scheme)
    steps = all(bool(mask.transitions[a, b]) for a, b in itertools.pairwise(sequence))
    return steps and bool(mask.start[sequence[0]]) and bool(mask.end[sequence[-1]])


@pytest.mark.parametrize("scheme", list(TAGS))
def test_a_sequence_is_allowed_exactly_when_its_strict_spans_cover_every_tagged_token(
    scheme: str,
) -> None:
    tags = TAGS[scheme]
    outside = rule(scheme).outside
    counted = {True: 0, False: 0}
    for length in range(1, 5):
        for sequence in itertools.product(range(len(tags)), repeat=length):
            named = [tags[i] for i in sequence]
            covered = sum(span.end - span.start for span in extract_spans(named, scheme))
            well_formed = covered == sum(tag != outside for tag in named)
            assert _allowed(sequence, scheme) == well_formed, named
            counted[well_formed] += 1
    assert min(counted.values()) >= 15  # both kinds of sequence were seen


def test_spans_are_start_end_kind_and_round_trip_through_tags() -> None:
    spans = [Span(0, 2, "PER"), Span(3, 4, "LOC"), Span(4, 7, "ORG")]
    for scheme in ("BIO", "BIOES"):
        tags = tags_from_spans(8, spans, scheme)
        assert extract_spans(tags, scheme) == spans == lenient_spans(tags)
    assert extract_spans(["B-PER", "I-PER"], "BIO")[0].kind == "PER"
    assert lenient_spans(["I-PER", "I-PER", "O", "I-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC")]


def test_an_unknown_scheme_and_foreign_tags_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="tag scheme 'BIOE' is unknown; available: BIO, BIOES"):
        rule("BIOE")
    with pytest.raises(UserError, match="'E-X' do not belong to the BIO scheme"):
        allowed_transitions(["O", "B-X", "E-X"], "BIO")
    with pytest.raises(ValueError, match="'NNP' is not O nor B-, I-, E-, S-"):
        lenient_spans(["O", "NNP"])


@pytest.mark.parametrize("tag", ["X-PER", "B-", "I-", "PER"])
def test_lenient_spans_refuses_a_tag_without_a_known_prefix_and_a_type(tag: str) -> None:
    with pytest.raises(ValueError, match="is not O nor B-, I-, E-, S- followed by a type"):
        lenient_spans(["O", tag])
