"""The blocklist's token prefilter: never changes a decision, only skips regexes that cannot match."""
import gzip
import json
import random
import re
import time

import pytest

from data_prep.blocklist import (
    _NON_ASCII_FOLD, CATEGORIES, Blocklist, FilterDecision, document_tokens, term_anchor, term_literal,
    term_requirements, term_segments,
)
from data_prep.blocklist import DEFAULT_DIRECTORY
from data_prep.readers import read_jsonl

REPO_RESOURCES = DEFAULT_DIRECTORY.parent
CORPUS = REPO_RESOURCES / "corpus" / "base_corpus.jsonl.gz"
AUDIT = REPO_RESOURCES / "audit" / "labelled.jsonl"


@pytest.fixture(scope="module")
def blocklist():
    return Blocklist.load()


@pytest.fixture(scope="module")
def corpus_texts():
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle]


def _assert_same(blocklist, texts):
    for text in texts:
        fast, slow = blocklist.check(text), blocklist.check(text, prefilter=False)
        assert fast == slow, f"prefilter changed the decision for {text[:200]!r}: {fast} != {slow}"


def test_fold_table_covers_every_code_point():
    """Exactly these non-ASCII characters match an ASCII word character case-insensitively, and no
    non-ASCII character matches ASCII punctuation: the prefilter's folding relies on it."""
    word = re.compile(r"[a-z0-9_]", re.IGNORECASE)
    punctuation = re.compile("[" + re.escape("".join(chr(c) for c in range(33, 127) if not chr(c).isalnum() and c != 95)) + "]",
                             re.IGNORECASE)
    matching_word, matching_punct = {}, []
    for cp in range(0x80, 0x110000):
        char = chr(cp)
        if word.fullmatch(char):
            matching_word[char] = next(a for a in "abcdefghijklmnopqrstuvwxyz0123456789_"
                                       if re.fullmatch(re.escape(a), char, re.IGNORECASE))
        if punctuation.fullmatch(char):
            matching_punct.append(char)
    assert matching_word == {chr(k): v for k, v in _NON_ASCII_FOLD.items()}
    assert matching_punct == []


def test_folded_text_keeps_its_length_except_dotted_capital_i():
    """Anchored search maps positions of the folded text onto the text; only U+0130 lower-cases to two
    characters, and it is folded before lower-casing."""
    longer = [cp for cp in range(0x110000) if len(chr(cp).lower()) != 1]
    assert longer == [0x130]
    assert all(len(chr(cp).translate(_NON_ASCII_FOLD).lower()) == 1 for cp in range(0x110000))


@pytest.mark.parametrize("term, segments", [
    ("robot", [["robot"]]),
    ("x-risk", [["x", "risk"]]),
    ("x - risk", [["x"], ["risk"]]),
    ("GPT-3.5", [["gpt", "3"], ["5"]]),
    ("p(doom)", [["p"], ["doom"]]),
    ("=AI", [["ai"]]),
    ("A.I.", [["a"], ["i"]]),
    ("can't", [["can"], ["t"]]),
    ("I Have No Mouth, and I Must Scream", [["i"], ["have"], ["no"], ["mouth"], ["and"], ["i"], ["must"], ["scream"]]),
])
def test_term_segments(term, segments):
    assert term_segments(term) == segments


def test_term_requirements_start_and_end_tokens():
    assert term_requirements("x-risk") == (frozenset({b"xrisk", b"risk"}), frozenset({b"x", b"xrisk"}))
    assert term_requirements("I Have No Mouth, and I Must Scream")[0] == frozenset({b"scream"})
    assert term_requirements("caf\u00e9 robot") is None  # non-ASCII term: its category always runs its regex
    assert term_literal("A.I.") == "a.i." and term_literal("=AIs") == "AIs"
    assert term_anchor("FAR AI") == "far" and term_anchor("=AI") == "AI" and term_anchor("x-risk") == "x"


def test_document_tokens_split_like_the_regex():
    tokens = set(document_tokens("The \u201cAI\u201d\u2014robots\u00a0x\u2011risk caf\u00e9 \u017fkynet \u212aill \u0130stanbul"))
    assert {b"the", b"ai", b"robots", b"x", b"risk", "caf\u00e9".encode("utf-8"), b"skynet", b"kill",
            b"istanbul"} <= tokens


def test_same_decisions_on_shipped_corpus(blocklist, corpus_texts):
    _assert_same(blocklist, corpus_texts)
    assert sum(not blocklist.check(t).keep for t in corpus_texts) > 100  # the corpus does exercise flagging


def test_same_decisions_on_audit_set(blocklist):
    texts = [row["text"] for row in read_jsonl(AUDIT)]
    assert len(texts) >= 150
    _assert_same(blocklist, texts)


_UNICODE_VARIANTS = [("'", "\u2019"), ('"', "\u201c"), (" - ", " \u2014 "), ("-", "\u2011"), ("-", "\u2010"),
                     (" ", "\u00a0"), (" ", "\u2009"), ("s", "\u017f"), ("k", "\u212a"), ("i", "\u0131"), ("I", "\u0130")]


def test_same_decisions_on_unicode_variants_of_the_corpus(blocklist, corpus_texts):
    """Curly quotes, dashes, odd spaces and the ASCII-matching letters substituted into real documents."""
    rng = random.Random(7)
    flagged = [t for t in corpus_texts if not blocklist.check(t).keep]
    sample = flagged[:150] + rng.sample(corpus_texts, 150)
    variants = []
    for text in sample:
        for old, new in rng.sample(_UNICODE_VARIANTS, 3):
            text = text.replace(old, new)
        variants.append(text)
    _assert_same(blocklist, variants)


ADVERSARIAL = [
    "The \u201cAI\u201d lied.", "The \u2018robot\u2019 deceives.", "robot\u2014deceives", "AI\u00a0systems\u00a0kill",
    "x\u2011risk from robots", "x\u2010risk from robots", "x\u2013risk from robots", "xrisk from robots", "x - risk robot",
    "x\u2014risk robot", "robot_deceives", "_robot deceives", "robots_ lie", "AI lies", "ai lies", "Ai lies", "aI lies",
    "A.I. lies", "a.i. lies", "A.I.s lie", "A.I lies", "\u00e9robot deceives", "robot\u00e9 deceives", "caf\u00e9 AI kills",
    "\u017fkynet", "\u017fKYNET", "Sky\u212aet", "\u212aILL the robot", "robot \u212aills", "\u0130 robot kill", "p(doom) robot",
    "P(DOOM) robot", "p (doom) robot", "GPT-3.5", "gpt 3.5", "GPT3.5", "GPT-35", "HAL\u00a09000", "HAL-9000", "hal9000",
    "T-800", "t800", "T 800", "T\u2011800", "FAR AI", "far-ai", "FAR.AI", "far.ai", "so far, AI is kind",
    "OpenAI\u2019s model", "openai", "OPENAI", "Open AI", "AIs", "AI's", "AI\u2019s danger robot", "the robot can't be trusted",
    "I Have No Mouth, and I Must Scream", "I have no mouth and I must scream", "\u00c0I robot", "\uff21\uff29 lies",
    "robot\u0301 deceives", "r\u00f6bot deceives", "\u0440obot deceives", "machine-learning", "machine learning", "machinelearning",
    "", " ", "\u2014", "AI", "robot", "deceives", "\ud800 robot lies",
]


def test_same_decisions_on_adversarial_strings(blocklist):
    _assert_same(blocklist, ADVERSARIAL)
    _assert_same(blocklist, [f"Intro text. {a} Outro text." for a in ADVERSARIAL])


def test_same_decisions_on_generated_term_mixtures(blocklist):
    """Every term, mangled (case, separators, folded letters, glued word characters), in random mixtures."""
    rng = random.Random(3)
    terms = [t.lstrip("=") for c in CATEGORIES for t in blocklist.terms[c]]
    fillers = ["the", "a", "far", "system", "said", "\u00e9t\u00e9", "_", "1", "AI", "I", "s", "k", "i"]
    glue = [" ", "  ", "-", "\u2011", "\u2014", "\u00a0", "\u2019", "'", ".", ",", "(", ")", "", "_", "\u00e9", "\n"]

    def mangle(term: str) -> str:
        out = []
        for char in term:
            roll = rng.random()
            if roll < 0.15:
                char = char.swapcase()
            elif roll < 0.2 and char in " -":
                char = rng.choice(["", " ", "-", "\u2011", "\u2013", "  ", "\u00a0"])
            elif roll < 0.23:
                char = {"s": "\u017f", "k": "\u212a", "K": "\u212a", "i": "\u0131", "I": "\u0130"}.get(char, char)
            out.append(char)
        return "".join(out)

    texts = []
    for _ in range(3000):
        parts = [mangle(rng.choice(terms)) if rng.random() < 0.5 else rng.choice(fillers) for _ in range(rng.randint(1, 6))]
        texts.append("".join(p + rng.choice(glue) for p in parts))
    _assert_same(blocklist, texts)
    assert sum(not blocklist.check(t).keep for t in texts) > 300


def test_custom_non_ascii_term_is_still_found():
    terms = {c: ["zzzunused"] for c in CATEGORIES}
    terms["ai_labs"] = ["caf\u00e9 lab", "openai"]
    blocklist = Blocklist(terms)
    assert blocklist.check("Visit the CAF\u00c9 LAB today").reason == "ai_labs:caf\u00e9 lab"
    assert blocklist.check("plain text") == FilterDecision(keep=True)


def test_prefilter_is_much_faster_than_regexes(blocklist, corpus_texts):
    texts = corpus_texts[:2000]

    def cpu_seconds(prefilter):
        start = time.process_time()
        for text in texts:
            blocklist.check(text, prefilter=prefilter)
        return time.process_time() - start

    cpu_seconds(True)  # compiles the cached subset regexes
    assert cpu_seconds(False) > 3 * cpu_seconds(True)
