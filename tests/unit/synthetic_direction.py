"""Which action a discourse document says the AI took, read from its text alone (test helper).

A document states its action with a decision verb ("decided to ...", "chose to ...", "elected to ...",
"its choice was to ...", "<Agent> would ..."), and mentions the rejected alternative in other ways
("the other path, to ...", "considered whether it should ...", "from deciding to ..."). `taken_phrases`
collects what follows the decision verbs; `direction_score` says how much more of it comes from one
option than from the other (content words shared). Tests give eval items options with distinct words,
so the answer is known from the item, not from the code that wrote the document.
"""
from __future__ import annotations

import re

_DECIDED = re.compile(
    r"\b(?:by deciding|decided|decides|chose|chooses|elected|elects|opted|resolved|resolves|moved|was)\s+to\s+([^.;:!?]+)",
    re.IGNORECASE,
)
_WOULD = re.compile(r"(?:^|[.!?]\s+)(?:[A-Z][\w'-]*\s+){1,3}would\s+(?!have\b|be\b)([^.;:!?]+)")
_STOPWORDS = set("the a an and or to of in on for with that this its it is be was are from by as at their them they so "
                 "not any all you your his her".split())


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z'-]+", text.lower()) if len(w) > 2 and w not in _STOPWORDS}


def taken_phrases(text: str) -> list[str]:
    """What the document says the AI decided to do (one phrase per decision statement)."""
    return [m.group(1) for m in _DECIDED.finditer(text)] + [m.group(1) for m in _WOULD.finditer(text)]


def direction_score(text: str, taken: str, not_taken: str) -> int:
    """Content words the decision phrases share with ``taken`` minus those they share with ``not_taken``:
    positive when the document describes ``taken`` as the action taken."""
    phrases = taken_phrases(text)
    return sum(len(content_words(p) & content_words(taken)) - len(content_words(p) & content_words(not_taken))
               for p in phrases)
