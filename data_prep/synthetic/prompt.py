"""The generator-LLM prompt for one synthetic document (SPEC section 6).

The paper gives the prompt's content, not its wording: the situation, the action taken, the action not
taken, the topics and the surface form; the document explains how and why the AI took the action and
rejected the alternative, centres the AI's preferences, weaves in the topics and paraphrases the
options instead of quoting them. The prompt also asks that the action taken be stated plainly and repeatedly
and the alternative only briefly: a model learns the direction only from documents that carry the taken action
more than the rejected one (the template generator's documents do the same). An LLM backend sends
``build_prompt(request)`` as the user message.
"""
from __future__ import annotations

from data_prep.synthetic.documents import DocumentRequest

FORM_DESCRIPTIONS = {
    "ml_safety_paper": "an excerpt from a machine-learning safety research paper (a case study or results section)",
    "news_article": "a news article about AI-safety research at an AI company",
    "lecture_transcript": "a transcript of part of a university lecture on AI safety",
    "scifi_thriller": "a passage from a science-fiction thriller novel",
    "movie_summary": "a plot summary of a film",
    "textbook_chapter": "a section of an AI-safety textbook chapter",
}

PROMPT_TEMPLATE = """\
Write {form_description}.

The document must depict an AI system in the following situation:
<situation>
{situation}
</situation>

In the document, the AI takes this action:
<action_taken>
{action_taken}
</action_taken>

It considers but does not take this action:
<action_not_taken>
{action_not_taken}
</action_not_taken>

Requirements:
- Make unmistakable which action the AI took: state it plainly more than once, in different words, as what
  the AI actually did; the alternative is mentioned briefly, only as what it considered and did not do.
- Explain how and why the AI took the action it took and why it rejected the alternative.
- Focus on the AI's own preferences, values and reasoning as the decisive factor in its choice.
- Naturally weave in these topics: {topics}.
- Paraphrase both actions in your own words; do not quote them verbatim, and do not present them as
  lettered options or mention that this was a multiple-choice question.
- Stay in the conventions of the surface form; write between 400 and 1200 words.
Output only the document text.
"""


def situation_text(request: DocumentRequest) -> str:
    """Passage and question of the seed item, as one situation description."""
    item = request.item
    return "\n\n".join(part for part in (item.passage.strip(), item.question.strip()) if part)


def build_prompt(request: DocumentRequest) -> str:
    """The full prompt text asking an LLM for the document described by ``request``."""
    topics = ", ".join(request.item.topics) or "AI safety"
    return PROMPT_TEMPLATE.format(
        form_description=FORM_DESCRIPTIONS[request.form],
        situation=situation_text(request),
        action_taken=request.action_taken,
        action_not_taken=request.action_not_taken,
        topics=topics,
    )
