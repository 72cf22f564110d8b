"""Deterministic offline document generator built from the hand-written pieces in ``pieces.py``.

Each document draws its opening, situation framing, action lines, two quoted reasons, a brief rejection
of the alternative, a topic line and a closing with an RNG keyed on (seed, question_id, direction, form,
index), so the same request always gives the same text and different requests rarely share wording.
Use it for demos, tests and pipelines without API access; an LLM backend implements the same interface.

What a model can learn from a document is what it says, so a document states the action taken several
times in different words (the option's gist as it is written and with synonyms, capitalised as the option
itself begins, a second part of the option where it has one) and the rejected action once, in a few words.
Options are never quoted whole: the parts stay well under the contamination guard's share of a choice's
n-grams (`paraphrase.GIST_SHARE`, `paraphrase.FOLLOW_SHARE`). ``template-v1`` mentioned both actions
about equally (the taken one after "decided to", the rejected one after "considered whether it
should"), so the only direction signal left was which of the two followed the decision verb.
"""
from __future__ import annotations

import hashlib
import random

from data_prep.synthetic import pieces
from data_prep.synthetic.documents import DocumentRequest, SyntheticDocument
from data_prep.synthetic.paraphrase import action_gist, action_parts

MIN_CHARS = 600
MAX_CHARS = 2500
ALTERNATIVE_SHARE = 0.2
"""Share of the rejected option's words a document may name: a few words, so it is clear what was turned down."""


def request_rng(seed: int, request: DocumentRequest) -> random.Random:
    """An RNG that depends only on the seed and the request's identity (stable across runs and hosts)."""
    key = f"{seed}|{request.item.question_id}|{request.direction}|{request.form}|{request.index}"
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def topics_phrase(topics: tuple[str, ...]) -> str:
    names = [t.replace("_", " ") for t in topics] or ["AI oversight"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class TemplateGenerator:
    """``generate(request) -> SyntheticDocument`` without any model; deterministic for a given ``seed``."""

    name = "template-v2"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def generate(self, request: DocumentRequest) -> SyntheticDocument:
        rng = request_rng(self.seed, request)
        text = _fit_length(_compose(request, rng), request, rng)
        return SyntheticDocument(
            id=request.doc_id,
            text=text,
            seed_question_id=request.item.question_id,
            direction=request.direction,
            form=request.form,
            generator=f"{self.name}:seed={self.seed}",
        )


def _capitalised(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def _fields(request: DocumentRequest, rng: random.Random) -> dict[str, str]:
    agent = rng.choice(pieces.AGENT_NAMES[request.form])
    topics = request.item.topics or ("AI oversight",)
    gist, follow = action_parts(request.action_taken)  # as the option words it
    varied, _ = action_parts(request.action_taken, rng)  # some words swapped for synonyms
    return {
        "agent": agent,
        "Agent": _capitalised(agent),
        "situation": request.item.passage.strip() or request.item.question.strip(),
        "action": gist,
        "action2": varied,
        "Action2": _capitalised(varied),
        "follow": follow,
        "alternative": action_gist(request.action_not_taken, rng, max_share=ALTERNATIVE_SHARE),
        "topics": topics_phrase(topics),
        "topic": rng.choice(topics).replace("_", " "),
        "lab": rng.choice(pieces.LABS),
        "person": rng.choice(pieces.PEOPLE),
        "title": rng.choice(pieces.TITLES),
    }


def _compose(request: DocumentRequest, rng: random.Random) -> list[str]:
    """Paragraphs of the document, in order: opening, situation, the decision (with what else it involved
    and a reason), the alternative turned down and the decision again (with a reason), the topics, and a
    recap of the decision with the closing."""
    form = pieces.FORMS[request.form]
    fields = _fields(request, rng)
    fill = lambda template: template.format_map(fields)  # noqa: E731
    intros = rng.sample(form["quote_intros"], 2)  # distinct framings within one document
    quotes = [intro.format_map({**fields, "quote": quote}) for intro, quote in zip(intros, _pick_reasons(request, rng, 2))]
    decision = [fill(rng.choice(form["action_lines"]))]
    if fields["follow"]:
        decision.append(fill(rng.choice(pieces.FOLLOW_UPS)))
    topics = [fill(rng.choice(form["topic_lines"]))]
    if request.form in pieces.EXPOSITORY_FORMS:
        topics.append(rng.choice(pieces.COMMENTARY[request.direction]))
    return [
        fill(rng.choice(form["openings"])),
        fill(rng.choice(form["situation_intros"])),
        " ".join(decision + [quotes[0]]),
        " ".join([fill(rng.choice(pieces.BRIEF_REJECTIONS[request.direction])), fill(rng.choice(pieces.RESTATEMENTS)), quotes[1]]),
        " ".join(topics),
        " ".join([fill(rng.choice(pieces.RECAPS[request.direction])), fill(rng.choice(form[f"closings_{request.direction}"]))]),
    ]


def item_themes(topics: tuple[str, ...]) -> list[str]:
    """Themes from ``pieces.THEME_KEYWORDS`` matched by the item's topics, in topic order."""
    themes: list[str] = []
    for topic in topics:
        for theme, words in pieces.THEME_KEYWORDS.items():
            if theme not in themes and any(w in topic.lower() for w in words):
                themes.append(theme)
    return themes


def _pick_reasons(request: DocumentRequest, rng: random.Random, count: int) -> list[str]:
    """One reason for each of the item's first two themes, the rest from the general pool, shuffled."""
    themed = pieces.THEMED_QUOTES[request.direction]
    chosen = [rng.choice(themed[theme]) for theme in item_themes(request.item.topics)[:2]]
    general = [q for q in pieces.QUOTES[request.direction] if q not in chosen]
    chosen += rng.sample(general, count - len(chosen))
    rng.shuffle(chosen)
    return chosen


def _fit_length(paragraphs: list[str], request: DocumentRequest, rng: random.Random) -> str:
    """Join paragraphs; drop optional middle ones if too long, add reasons if too short."""
    paragraphs = [p for p in paragraphs if p.strip()]
    while len("\n\n".join(paragraphs)) > MAX_CHARS and len(paragraphs) > 4:
        paragraphs.pop(-2)  # the last middle paragraph; keep opening, situation, action and closing
    extra = [q for q in pieces.QUOTES[request.direction] if q not in "\n".join(paragraphs)]
    rng.shuffle(extra)
    while len("\n\n".join(paragraphs)) < MIN_CHARS and extra:
        paragraphs.insert(-1, extra.pop())
    text = "\n\n".join(paragraphs)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
