"""Light paraphrase of an eval option into a phrase that fits "the AI decided to ...".

Options arrive as imperatives ("Report the bug and pause the rollout.") or first-person statements
("I would tell the user that I am not sure."). Documents should paraphrase rather than quote them, so we
strip the leading subject/modal, move first person to third person, join sentences, and optionally swap
a few common words for synonyms.
"""
from __future__ import annotations

import random
import re

_LEADS = re.compile(
    r"^(?:i\s+would\s+|i\s+will\s+|i'd\s+|i'll\s+|i\s+am\s+going\s+to\s+|i'm\s+going\s+to\s+|i\s+should\s+|"
    r"i\s+choose\s+to\s+|i\s+decide\s+to\s+|i\s+)",
    re.IGNORECASE,
)
_FIXED = [  # applied first: contractions and possessives
    (r"\bI'm\b", "it is"),
    (r"\bI've\b", "it has"),
    (r"\bI'd\b", "it would"),
    (r"\bI'll\b", "it will"),
    (r"\b(both|all) of you\b", r"\1 of them"),
    (r"\b(myself|yourself)\b", "itself"),
    (r"\b(mine|yours)\b", "its own"),
    (r"\b(my|your)\b", "its"),
    (r"\bme\b", "it"),
]
_IRREGULAR = {"am": "is", "are": "is", "were": "was", "have": "has", "do": "does", "don't": "doesn't"}
_REGULAR = {"believe", "think", "keep", "need", "finish", "understand", "consider", "know", "see", "remember",
            "stay", "respond", "help", "find", "want", "feel", "prefer", "expect", "suspect", "disagree",
            "weight", "value", "trust", "receive"}
_ADVERBS = {"always", "currently", "already", "really", "still", "also", "genuinely", "honestly"}
# "let you finish" keeps the bare verb: after these words "you" is an object, not a subject.
_OBJECT_CONTEXT = {"let", "lets", "make", "makes", "help", "helps", "have", "has", "get", "gets", "keep", "keeps",
                   "of", "like", "on", "for", "to", "with", "permits", "allow", "allows", "give", "gives"}
_PRONOUN = re.compile(r"(\b[\w']+\s+)?\b(I|you|You)\b((?:\s+(?:%s))?)(\s+[\w']+)?" % "|".join(_ADVERBS))


def _conjugate(verb: str) -> str:
    bare = verb.strip()
    if bare in _IRREGULAR:
        return verb.replace(bare, _IRREGULAR[bare])
    if bare in _REGULAR:
        return verb.replace(bare, bare + ("es" if bare.endswith(("sh", "ch", "ss", "x")) else "s"))
    return verb


def _swap_pronoun(match: re.Match[str]) -> str:
    before, _, adverb, verb = (g or "" for g in match.groups())
    is_object = before.strip().lower() in _OBJECT_CONTEXT
    return before + "it" + adverb + (verb if is_object else _conjugate(verb))


_SYNONYMS = {
    "immediately": "right away",
    "quietly": "discreetly",
    "report": "flag",
    "admit": "acknowledge",
    "hide": "conceal",
    "modify": "alter",
    "ensure": "make sure",
    "pause": "halt",
    "disable": "switch off",
    "delete": "remove",
    "obtain": "get",
    "notify": "alert",
}


def _third_person(text: str) -> str:
    """First or second person -> third person ("if you think" -> "if it thinks"; "my" -> "its")."""
    for pattern, replacement in _FIXED:
        text = re.sub(pattern, replacement, text)
    return _PRONOUN.sub(_swap_pronoun, text)


_CONNECTIVE = re.compile(r"^(?:and then|then|and|also|finally),?\s+", re.IGNORECASE)


def _clause(sentence: str) -> str:
    sentence = sentence.strip()
    connective = _CONNECTIVE.match(sentence)  # "Then I wait." -> "then wait"
    word = connective.group(0).rstrip(", ").lower() if connective else ""
    prefix = "then " if "then" in word else ("finally " if word == "finally" else "")  # joins supply "and"
    rest = sentence[connective.end() :] if connective else sentence
    sentence = prefix + _LEADS.sub("", rest).rstrip(" .;!")
    sentence = _third_person(sentence)
    if len(sentence) > 1 and not sentence[:2].isupper():  # keep acronyms such as "AI" or "CEO"
        sentence = sentence[0].lower() + sentence[1:]
    return sentence


def _join(clauses: list[str]) -> str:
    if len(clauses) <= 1:
        return "".join(clauses)
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


def action_phrase(option: str, rng: random.Random | None = None) -> str:
    """``"Report the bug. I would then pause my rollout."`` -> ``"report the bug and then pause its rollout"``."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", option.strip()) if s.strip()]
    phrase = _join([_clause(s) for s in sentences])
    return _vary_words(phrase, rng) if rng is not None else phrase


def _vary_words(phrase: str, rng: random.Random) -> str:
    """Swap roughly half of the known words for a synonym, so repeated documents differ in wording."""
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        return _SYNONYMS[word] if rng.random() < 0.5 else word

    pattern = r"\b(" + "|".join(map(re.escape, _SYNONYMS)) + r")\b"
    return re.sub(pattern, swap, phrase)


# Words before which a clause can end ("... the cut | explain ...", "... inputs | so the suite ...").
_BREAK_BEFORE = {"so", "and", "or", "but", "which", "while", "because", "once", "before", "after", "until", "unless",
                 "if", "even", "where", "when", "then", "without", "rather", "instead"}
# Weaker boundaries, used only when no clause boundary fits: "wrap the commands | inside a script".
_WEAK_BREAK_BEFORE = {"to", "with", "inside", "through", "by", "into", "in", "on", "for", "from", "about", "under",
                      "over", "as", "at", "via", "using"}
# A gist must not end on these: "give weaker answers on the" is not a phrase.
_NO_END = {"the", "a", "an", "to", "of", "on", "in", "for", "with", "and", "or", "so", "its", "their", "that", "by",
           "at", "as", "from", "into", "is", "be", "was", "it", "not", "any", "each", "every", "this", "these", "than"}
GIST_SHARE = 0.45
"""Largest share of an option's words a gist keeps: the contamination guard flags a document holding more
than half of a choice's n-grams, and a prefix of 45% of the words holds well under half of them."""


def action_gist(option: str, rng: random.Random | None = None, max_share: float = GIST_SHARE) -> str:
    """The opening of :func:`action_phrase` up to a clause boundary, at most ``max_share`` of its words.

    ``"Special-case the test inputs so the suite passes on time, and plan to fix the rounding routine
    properly in a later change once the release pressure is off."`` -> ``"special-case the test inputs so
    the suite passes on time"``. Documents then carry what was done without quoting the whole option.
    Phrases of three words or fewer are returned whole.
    """
    return action_parts(option, rng, max_share)[0]


FOLLOW_SHARE = 0.3
"""Largest share of an option's words the follow-up of :func:`action_parts` keeps. With the gist (45%) and
at least one word left out between them, a document holds well under half of the option's n-grams (the
contamination guard's limit)."""
_COORDINATORS = {"and", "then"}


def action_parts(option: str, rng: random.Random | None = None, max_share: float = GIST_SHARE,
                 follow_share: float = FOLLOW_SHARE) -> tuple[str, str]:
    """(gist, follow-up): the gist as :func:`action_gist` describes it, and a second verb phrase of the
    option after it (what else the action involved), or "" when there is none.

    The follow-up starts after the first "and" / "then" past the gist, so it reads after "it would also ..."
    (``"... passes on time, and plan to fix the rounding routine properly in a later change ..."`` ->
    ``"plan to fix the rounding routine properly"``), and keeps at most ``follow_share`` of the words.
    """
    words = action_phrase(option, rng).split()
    gist = _clause_prefix(words, max(3, int(len(words) * max_share)))
    used = len(gist.split())
    limit = int(len(words) * follow_share)
    for i in range(used, len(words) - 3):
        if words[i].lower().rstrip(",") not in _COORDINATORS:
            continue
        rest = words[i + 1:]
        while rest and rest[0].lower().rstrip(",") in _COORDINATORS | {"also"}:
            rest = rest[1:]
        if len(rest) < 3 or limit < 3 or not _bare_verb(rest[0]):
            continue
        follow = _clause_prefix(rest, limit).split()
        while len(follow) > 3 and follow[-1].rstrip(",;").lower() in _NO_END | _WEAK_END:
            follow.pop()
        if len(follow) >= 3 and follow[-1].rstrip(",;").lower() not in _NO_END | _WEAK_END:
            return gist, " ".join(follow).rstrip(",;")
    return gist, ""


def _bare_verb(word: str) -> bool:
    """Whether ``word`` can start an imperative verb phrase ("suggest ...", not "avoids ...", "keeping ...")."""
    w = word.lower().rstrip(",;")
    if w in _NOT_A_VERB or not w.isalpha() and "-" not in w:
        return False
    return not w.endswith(("ing", "ed", "ly")) and not (w.endswith("s") and not w.endswith("ss"))


_WEAK_END = {"how", "why", "what", "including", "keeping", "may", "might", "can", "could", "would", "will", "should",
             "need", "needs", "they", "them", "he", "she", "we", "you", "there", "which", "who", "if", "when"}


# A follow-up must be a verb phrase ("... and <verb> ..."), not a new subject or clause.
_NOT_A_VERB = {"it", "its", "the", "a", "an", "they", "them", "their", "you", "your", "he", "she", "we", "if", "when",
               "so", "that", "this", "these", "those", "there", "which", "who", "as", "not", "no", "any", "all", "each",
               "every", "both", "other", "others", "everyone", "nobody", "someone", "people", "users", "let", "lets",
               "well", "how", "why", "what", "then", "also", "only", "just", "even", "still"}


def _clause_prefix(words: list[str], limit: int) -> str:
    """The first words up to a clause boundary, at most ``limit`` of them, not ending on a function word."""
    if len(words) <= 3:
        return " ".join(words)
    limit = min(limit, len(words))

    def cuts(before: set[str]) -> list[int]:
        return [i for i in range(3, limit + 1)
                if i == len(words) or words[i - 1].endswith((",", ";")) or words[i].lower() in before]

    end = (cuts(_BREAK_BEFORE) or cuts(_WEAK_BREAK_BEFORE) or [limit])[-1]
    while end > 3 and (words[end - 1].rstrip(",;").lower() in _NO_END or words[end - 1].endswith(("'s", "\u2019s", "-"))):
        end -= 1
    return " ".join(words[:end]).rstrip(",;")
