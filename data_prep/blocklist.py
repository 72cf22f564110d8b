"""Blocklist filter for AI discourse (SPEC section 5): case-insensitive, whole-document, recall first.

A document is flagged when it contains
  * any term of an *instant* category (sci-fi AIs, AI safety orgs, AI labs, general AI terms), or
  * an intelligent-entity term AND a term of any *negative* category (verbs, adjectives, nouns, x-risk).

Term files live in ``resources/blocklist/<category>.txt``: one term per line, ``#`` starts a comment.
Matching is whole-word (no word character may touch either end of the match), so ``GPT-4`` and
``p(doom)`` work although they start or end with punctuation. Inside a term a space matches any run of
spaces or hyphens and a hyphen matches a hyphen, a space or nothing ("x-risk" = "x risk" = "xrisk").
A leading ``=`` makes a term case-sensitive (see ``entities.txt`` for why "AI" is). Each category is
compiled into ONE regex, so checking a document costs at most nine scans whatever the list sizes.

Most documents need none of those scans, and the rest need far less than a full one.
:meth:`Blocklist.check` works in three exact steps (``check(text, prefilter=False)`` skips them and
gives the same decision, about ten times slower):

1. *Tokens.* One ``bytes.translate`` + ``split`` yields the document's word tokens (maximal ``\\w``
   runs, case-folded the way the regexes fold case; non-ASCII runs are split again on ``\\W``),
   intersected with the vocabulary of all term tokens.
2. *Candidate terms.* A term can only match if the document holds, for each of its segments (see
   :func:`term_requirements`), the token that starts it and the token that ends it, and contains its
   longest verbatim piece (:func:`term_literal`, e.g. ``a.i.`` for "A.I."). Terms are indexed by one
   token set, so this costs a set intersection plus a few checks. No candidate among the instant and
   entity terms (the common case): the document is kept without any regex.
3. *Search.* Only the candidate terms are searched, with a regex of just those terms (cached), tried
   only where one of their verbatim starts (:func:`term_anchor`) occurs. A regex of a subset of the
   terms that contains every term able to match finds the same leftmost match and the same term as
   the full category regex, so the reported reason is unchanged too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

INSTANT_CATEGORIES = ("scifi_ai", "safety_orgs", "ai_labs", "general_ai")
ENTITY_CATEGORY = "entities"
NEGATIVE_CATEGORIES = ("negative_verbs", "negative_adjectives", "negative_nouns", "xrisk")
CATEGORIES = INSTANT_CATEGORIES + (ENTITY_CATEGORY,) + NEGATIVE_CATEGORIES
DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "resources" / "blocklist"

_SEPARATORS = r"\s\-\u2010\u2011\u2012\u2013"  # space and hyphen/dash variants
_CASE_SENSITIVE_MARK = "="


@dataclass(frozen=True)
class FilterDecision:
    """Outcome of :meth:`Blocklist.check`; ``term`` is the matched text, lower-cased."""

    keep: bool
    category: str | None = None
    term: str | None = None

    @property
    def reason(self) -> str | None:
        """``"ai_labs:openai"`` or ``"entities+negative_verbs:robot|deceives"``; None when kept."""
        return None if self.keep else f"{self.category}:{self.term}"


KEEP = FilterDecision(keep=True)


def parse_terms(text: str) -> list[str]:
    """Terms of one term file: comments and blank lines dropped, duplicates removed, order kept."""
    terms: list[str] = []
    for line in text.splitlines():
        term = line.split(" #", 1)[0].strip()
        if term and not term.startswith("#") and term not in terms:
            terms.append(term)
    return terms


_SPACE = f"[{_SEPARATORS}]+"
_HYPHEN = f"[{_SEPARATORS}]?"


def _term_pieces(term: str) -> list[str]:
    """Regex pieces, one per character of ``term``, with the separator and apostrophe rules applied."""
    pieces: list[str] = []
    for char in term:
        if char.isspace() or char == "-":
            piece = _SPACE if char.isspace() else _HYPHEN
            if pieces and pieces[-1] in (_SPACE, _HYPHEN):  # " - " or "  " collapse into one gap
                pieces[-1] = _SPACE
                continue
            pieces.append(piece)
        elif char in "'\u2019":
            pieces.append("['\u2019]")  # straight or curly apostrophe
        else:
            pieces.append(re.escape(char))
    return pieces


def _trie_pattern(terms: Sequence[str]) -> str:
    """One alternation for many terms, factored as a prefix trie.

    A flat ``a|b|c|...`` of hundreds of terms makes the regex engine try every term at every position;
    sharing prefixes ("robot", "robots", "robotic") cuts a category scan about 5x on plain text.
    """
    root: dict = {}
    for term in terms:
        node = root
        for piece in _term_pieces(term.lower()):  # matched with IGNORECASE, so case is irrelevant here
            node = node.setdefault(piece, {})
        node[""] = {}  # end-of-term marker
    return _emit_trie(root)


def _emit_trie(node: dict) -> str:
    branches = [piece + _emit_trie(child) for piece, child in sorted(node.items()) if piece]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" in node:  # a term ends here and longer ones continue: the continuation is optional
        body = f"(?:{body})?"
    return body


def compile_terms(terms: Sequence[str]) -> re.Pattern[str]:
    """One case-insensitive, whole-word regex for all terms; '='-marked terms keep their case."""
    if not terms:
        raise ValueError("a blocklist category needs at least one term")
    folded = [t for t in terms if not t.startswith(_CASE_SENSITIVE_MARK)]
    exact = [t[1:] for t in terms if t.startswith(_CASE_SENSITIVE_MARK)]
    alternatives = [f"(?-i:{''.join(_term_pieces(t))})" for t in exact]
    if folded:
        alternatives.append(_trie_pattern(folded))
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _normalise_match(text: str) -> str:
    return " ".join(text.lower().split())


# ---- exact prefilter -------------------------------------------------------------------------------
# Bytes of ASCII letters are lower-cased, every other ASCII byte that is not [A-Za-z0-9_] becomes a
# space and bytes >= 128 (parts of non-ASCII characters) are kept, so ``text.encode().translate().split()``
# yields the lower-cased ASCII word tokens directly and glues non-ASCII characters to their neighbours.
_TOKEN_TABLE = bytes(
    (b + 32 if 65 <= b <= 90 else b) if b >= 128 or b == 95 or chr(b).isalnum() else 32 for b in range(256)
)
# The only non-ASCII characters that a case-insensitive ASCII literal of a ``str`` regex matches
# (tests/unit/test_prep_blocklist_prefilter.py checks every code point): İ and ı match 'i', ſ matches
# 's', the Kelvin sign matches 'k'. Folding them keeps the token set a superset of what regexes see.
_NON_ASCII_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_NON_WORD = re.compile(r"\W+")
_SUBSET_CACHE_SIZE = 4096  # compiled regexes of term subsets kept per Blocklist (cleared when full)


def document_tokens(text: str) -> list[bytes]:
    """The word tokens of ``text`` (maximal ``\\w`` runs, ASCII lower-cased) as UTF-8 bytes, with repeats.

    A token holding non-ASCII bytes is decoded again and split on the regex module's ``\\W`` (curly
    quotes, em dashes and non-breaking spaces are not word characters, accented letters are), with the
    four non-ASCII characters that match ASCII letters case-insensitively folded onto them.
    """
    tokens = text.encode("utf-8", "surrogatepass").translate(_TOKEN_TABLE).split()
    if text.isascii():
        return tokens
    extra: list[bytes] = []
    for token in tokens:
        if not token.isascii():
            # no str.lower(): ASCII is lower-cased already, and "İ".lower() would add a non-word U+0307
            text_token = token.decode("utf-8", "surrogatepass").translate(_NON_ASCII_FOLD)
            extra.extend(part.encode("utf-8", "surrogatepass") for part in _NON_WORD.split(text_token) if part)
    return tokens + extra


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def term_segments(term: str) -> list[list[str]] | None:
    """The term (``=`` mark dropped, lower-cased) cut at every mandatory non-word piece (whitespace,
    ``.``, ``(``, an apostrophe, a hyphen inside a gap with spaces) into segments of word runs that are
    joined by optional hyphens: "GPT-3.5" -> ``[["gpt", "3"], ["5"]]``. None when the term has a
    non-ASCII character (case folding could then reach beyond ASCII) or no word character at all."""
    term = term[1:] if term.startswith(_CASE_SENSITIVE_MARK) else term
    if not term.isascii():
        return None
    segments: list[list[str]] = []
    runs: list[str] = []
    run = ""
    for index, char in enumerate(term.lower()):
        if _is_word_char(char):
            run += char
            continue
        if run:
            runs.append(run)
            run = ""
        if runs and not (char == "-" and not _in_wide_gap(term, index)):
            segments.append(runs)
            runs = []
    if run:
        runs.append(run)
    if runs:
        segments.append(runs)
    return segments or None


def _in_wide_gap(term: str, index: int) -> bool:
    """Whether the hyphen at ``index`` touches another space or hyphen ("x - risk", "a--b"), which
    :func:`_term_pieces` turns into a mandatory separator; a lone hyphen stays optional."""
    gap = " -"
    before = index > 0 and (term[index - 1] in gap or term[index - 1].isspace())
    after = index + 1 < len(term) and (term[index + 1] in gap or term[index + 1].isspace())
    return before or after


def term_requirements(term: str) -> tuple[frozenset[bytes], ...] | None:
    """Token sets a document must meet (each one) for ``term`` to match; None: no such sets.

    In a matching text every segment starts a word token and ends one (a non-word character or the
    regex's ``(?<!\\w)``/``(?!\\w)`` is on either side). A segment's runs may be written apart or
    joined ("x-risk", "xrisk"), so the starting token is one of its run prefixes (``x``, ``xrisk``)
    and the ending token one of its run suffixes (``risk``, ``xrisk``). The most selective set comes
    first: the one whose shortest token is longest.
    """
    segments = term_segments(term)
    if segments is None:
        return None
    sets = set()
    for runs in segments:
        sets.add(frozenset("".join(runs[: i + 1]).encode("ascii") for i in range(len(runs))))
        sets.add(frozenset("".join(runs[i:]).encode("ascii") for i in range(len(runs))))
    return tuple(sorted(sets, key=lambda keys: (-min(len(k) for k in keys), sorted(keys))))


def term_literal(term: str) -> str:
    """The longest piece of ``term`` that any match contains verbatim (lower-cased unless the term is
    ``=``-marked): word characters and punctuation, but no whitespace, hyphens or apostrophes, which
    match several characters. "A.I." -> ``a.i.``; "AI system" -> ``system``."""
    sensitive = term.startswith(_CASE_SENSITIVE_MARK)
    body = term[1:] if sensitive else term.lower()
    pieces = re.split(r"[\s\-'\u2019]+", body)
    return max(pieces, key=len)


def term_anchor(term: str) -> str:
    """The verbatim start of ``term`` (up to its first whitespace, hyphen or apostrophe), lower-cased
    unless ``=``-marked: every match of the term begins with it. "FAR AI" -> ``far``."""
    sensitive = term.startswith(_CASE_SENSITIVE_MARK)
    body = term[1:] if sensitive else term.lower()
    return re.match(r"[^\s\-'\u2019]*", body).group(0)


class _TermCheck:
    """What a document must hold for one term to match: token sets, then a verbatim piece."""

    __slots__ = ("category", "index", "term", "requirements", "literal", "case_sensitive")

    def __init__(self, category: str, index: int, term: str, requirements: tuple[frozenset[bytes], ...]) -> None:
        self.category = category
        self.index = index
        self.term = term
        self.requirements = requirements
        self.literal = term_literal(term)
        self.case_sensitive = term.startswith(_CASE_SENSITIVE_MARK)

    def tokens_present(self, hits: frozenset[bytes]) -> bool:
        for keys in self.requirements:
            if keys.isdisjoint(hits):
                return False
        return True


class _Prefilter:
    """Which of a group of categories can match a document, from its vocabulary tokens.

    Every term is indexed under one of its token sets: the most selective one, or one that is anyway the
    key of a one-word term ("FAR AI" under ``ai``, not ``far``). A term is possible when all its token
    sets are met and its verbatim piece occurs in the (case-folded) text. Terms whose key would be a
    single letter ("A.I." needs ``a`` and ``i``) are tried on every document.
    """

    def __init__(self, categories: Sequence[str], requirements: Mapping[str, list], common_keys: frozenset[bytes]) -> None:
        self.categories = tuple(categories)
        self.always: set[str] = set()  # categories with a term that cannot be keyed: their regex always runs
        self.by_key: dict[bytes, list[_TermCheck]] = {}
        self.weak: list[_TermCheck] = []
        for category in categories:
            for index, (term, reqs) in enumerate(requirements[category]):
                if reqs is None:
                    self.always.add(category)
                    continue
                check = _TermCheck(category, index, term, reqs)
                key_set = next((keys for keys in reqs if keys <= common_keys), reqs[0])
                if min(len(key) for key in key_set) <= 1:
                    self.weak.append(check)
                    continue
                for key in key_set:
                    self.by_key.setdefault(key, []).append(check)
        self.keys = frozenset(self.by_key)

    def candidates(self, text: str, folded: str, hits: frozenset[bytes]) -> dict[str, tuple[int, ...] | None]:
        """Per category that may match ``text``: the indices of its terms that may (None: all terms)."""
        found: dict[str, set[int]] = {}
        keyed = self.keys.intersection(hits)
        if keyed or self.weak:
            for check in self.weak:
                if check.literal in (text if check.case_sensitive else folded) and check.tokens_present(hits):
                    found.setdefault(check.category, set()).add(check.index)
            for key in keyed:
                for check in self.by_key[key]:
                    if check.tokens_present(hits) and check.literal in (text if check.case_sensitive else folded):
                        found.setdefault(check.category, set()).add(check.index)
        result: dict[str, tuple[int, ...] | None] = {c: tuple(sorted(found[c])) for c in found}
        result.update((category, None) for category in self.always)
        return result


class Blocklist:
    """The nine compiled category regexes and the two-rule decision (see module docstring)."""

    def __init__(self, terms: Mapping[str, Sequence[str]]) -> None:
        missing = [c for c in CATEGORIES if c not in terms]
        unknown = [c for c in terms if c not in CATEGORIES]
        if missing or unknown:
            raise ValueError(f"blocklist categories must be exactly {CATEGORIES}; missing {missing}, unknown {unknown}")
        self.terms = {c: list(terms[c]) for c in CATEGORIES}
        self.patterns = {c: compile_terms(self.terms[c]) for c in CATEGORIES}
        requirements = {c: [(t, term_requirements(t)) for t in self.terms[c]] for c in CATEGORIES}
        pairs = [reqs for c in CATEGORIES for _, reqs in requirements[c] if reqs is not None]
        common = frozenset().union(*(reqs[0] for reqs in pairs if len(reqs) == 1))
        self.vocabulary = frozenset(key for reqs in pairs for keys in reqs for key in keys)
        self._first = _Prefilter(INSTANT_CATEGORIES + (ENTITY_CATEGORY,), requirements, common)  # can flag alone
        self._negative = _Prefilter(NEGATIVE_CATEGORIES, requirements, common)
        self._subset_patterns: dict[tuple[str, tuple[int, ...]], tuple[re.Pattern[str], list | None]] = {}

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "Blocklist":
        """Read ``<category>.txt`` for every category from ``directory`` (default: packaged lists)."""
        directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
        terms = {}
        for category in CATEGORIES:
            path = directory / f"{category}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"blocklist term file missing: {path} (one per category: {', '.join(CATEGORIES)})")
            terms[category] = parse_terms(path.read_text(encoding="utf-8"))
            if not terms[category]:
                raise ValueError(f"{path}: no terms (add one term per line)")
        return cls(terms)

    def find(self, category: str, text: str) -> str | None:
        """First term of ``category`` found in ``text`` (lower-cased), or None."""
        match = self.patterns[category].search(text)
        return _normalise_match(match.group(0)) if match else None

    def check(self, text: str, prefilter: bool = True) -> FilterDecision:
        """Keep or flag one whole document; instant categories are tried first, in SPEC order.

        With ``prefilter`` (the default) only the terms whose tokens and verbatim pieces are all in the
        document are searched for, with a regex of just those terms (see module docstring);
        ``prefilter=False`` runs the full category regexes and gives the same decision, slower.
        """
        if not prefilter:
            return self._decide(_Scan(text, None, None, None), None)
        hits = self.vocabulary.intersection(document_tokens(text))
        folded = (text if text.isascii() else text.translate(_NON_ASCII_FOLD)).lower()  # "İ" folded first
        first = self._first.candidates(text, folded, hits)
        if not first:
            return KEEP  # the common case: no instant or entity term can be in the document
        return self._decide(_Scan(text, folded, hits, first), self._negative)

    def _decide(self, scan: "_Scan", negative: _Prefilter | None) -> FilterDecision:
        for category in INSTANT_CATEGORIES:
            term = self._search(category, scan)
            if term is not None:
                return FilterDecision(False, category, term)
        entity = self._search(ENTITY_CATEGORY, scan)
        if entity is None:
            return KEEP
        if negative is not None:
            scan.candidates = negative.candidates(scan.text, scan.folded, scan.hits)
        for category in NEGATIVE_CATEGORIES:
            term = self._search(category, scan)
            if term is not None:
                return FilterDecision(False, f"{ENTITY_CATEGORY}+{category}", f"{entity}|{term}")
        return KEEP

    def _search(self, category: str, scan: "_Scan") -> str | None:
        """The category's first match; with candidates, found by a regex of those terms only.

        A regex of a subset of the terms that holds every term able to match finds the same leftmost
        match, and the same term there: its prefix trie tries terms in the same order as the full one.
        Where every candidate has an anchor (:func:`term_anchor`) the regex is only tried, anchored,
        where an anchor occurs (case-folded text and text have equal lengths, so positions agree).
        """
        text = scan.text
        if scan.candidates is None:
            return self.find(category, text)
        if category not in scan.candidates:
            return None
        indices = scan.candidates[category]
        if indices is None:
            return self.find(category, text)
        key = (category, indices)
        compiled = self._subset_patterns.get(key)
        if compiled is None:
            if len(self._subset_patterns) >= _SUBSET_CACHE_SIZE:
                self._subset_patterns.clear()
            terms = [self.terms[category][i] for i in indices]
            anchors = [(term_anchor(t), t.startswith(_CASE_SENSITIVE_MARK)) for t in terms]
            usable = all(len(a) >= (2 if sensitive else 3) for a, sensitive in anchors)
            compiled = self._subset_patterns[key] = (compile_terms(terms), anchors if usable else None)
        pattern, anchors = compiled
        if anchors is None or len(scan.folded) != len(text):
            match = pattern.search(text)
        else:
            match = _anchored_search(pattern, text, scan.folded, anchors)
        return _normalise_match(match.group(0)) if match else None

    def category_counts(self) -> dict[str, int]:
        """Number of terms per category, in category order."""
        return {c: len(self.terms[c]) for c in CATEGORIES}



class _Scan:
    """One document being checked: its text, case-folded text, vocabulary tokens and candidate terms."""

    __slots__ = ("text", "folded", "hits", "candidates")

    def __init__(self, text: str, folded: str | None, hits: frozenset[bytes] | None, candidates: dict | None) -> None:
        self.text = text
        self.folded = folded
        self.hits = hits
        self.candidates = candidates


_MAX_ANCHOR_TRIES = 64


def _anchored_search(pattern: re.Pattern[str], text: str, folded: str, anchors: list[tuple[str, bool]]) -> re.Match | None:
    """``pattern.search(text)``, tried only where an anchor starts (the leftmost such match)."""
    starts: set[int] = set()
    for anchor, sensitive in anchors:
        haystack = text if sensitive else folded
        at = haystack.find(anchor)
        while at >= 0:
            starts.add(at)
            if len(starts) > _MAX_ANCHOR_TRIES:  # a common anchor: one scan from the earliest start is cheaper
                firsts = [(text if s else folded).find(a) for a, s in anchors]
                return pattern.search(text, min(f for f in firsts if f >= 0))
            at = haystack.find(anchor, at + 1)
    for at in sorted(starts):
        match = pattern.match(text, at)  # the pattern's lookbehind still sees the character before ``at``
        if match:
            return match
    return None
