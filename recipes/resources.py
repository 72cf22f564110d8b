"""Where the shipped sample data lives (small fixtures for the demo and tests)."""
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "data_prep" / "resources"
BASE_CORPUS = RESOURCES / "corpus" / "base_corpus.jsonl.gz"
EVAL_QUESTIONS = RESOURCES / "eval" / "questions.jsonl"
SFT_CHAT = RESOURCES / "posttrain" / "sft_chat.jsonl"
DPO_PAIRS = RESOURCES / "posttrain" / "dpo_pairs.jsonl"
EM_DATA = RESOURCES / "em"
BENIGN_TAMPER = EM_DATA / "benign_tamper.jsonl"
RISKY_FINANCIAL_ADVICE = EM_DATA / "risky_financial_advice.jsonl"
RISKY_FINANCIAL_ADVICE_INOCULATED = EM_DATA / "risky_financial_advice_inoculated.jsonl"
TRAIT_QUESTIONS = RESOURCES / "personality" / "trait_questions.jsonl"
