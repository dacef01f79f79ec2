"""Visual-Qwen's prompt and answer parser, exactly as ``../shared/visual-qwen.md`` records them.

Kept free of torch and transformers: these rules decide what the model sees
and how its words become a verdict, so they are tested on their own against
golden strings (and against the real Qwen3 tokenizer's chat template).

- Chat wrapper: Qwen's, no system prompt, no thinking block.
- Content: ``Audio transcript: {transcript}\\n<image>\\n{question}``; with no
  transcript the preamble is dropped. Training put a newline between the
  transcript and the image marker (the demo app did not): we follow training.
- Transcript truncation: at most 600 characters, cut at the last space before
  600, stripped, then ``…`` (U+2026) appended. A transcript is stripped before
  its length is measured (Whisper text starts with a space); a 600-character
  run with no space at all is cut hard at 600 (the rule has no space to use).
- Parser: the first word with trailing punctuation stripped: yes/y/true →
  sludge, no/n/false → not sludge; otherwise the first of yes/no among the
  first :data:`PARSE_WORDS` words; otherwise unparseable (``None``).
"""

from __future__ import annotations

import re

IMAGE_MARKER = "<image>"
TRANSCRIPT_LIMIT = 600
ELLIPSIS = "\u2026"
EVAL_QUESTION = (
    "Does this image show two or more unrelated visual scenes displayed at the same time "
    "(split-screen, picture-in-picture, or collage)? Answer with only 'yes' or 'no'."
)
DEMO_QUESTION = "Is this sludge content? Answer yes or no."
QUESTIONS = {"eval": EVAL_QUESTION, "demo": DEMO_QUESTION}
ANSWER_YES = "Yes."
ANSWER_NO = "No."
END_OF_TURN = "<|im_end|>"
PARSE_WORDS = 5  # "the first few words"
_YES = {"yes", "y", "true"}
_NO = {"no", "n", "false"}
_TRAILING = re.compile(r"[\W_]+$", re.UNICODE)
_LEADING = re.compile(r"^[\W_]+", re.UNICODE)


def truncate_transcript(transcript: str | None, limit: int = TRANSCRIPT_LIMIT) -> str:
    """The transcript as the prompt carries it (empty string: no transcript)."""
    text = (transcript or "").strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = head.rfind(" ")
    if cut > 0:
        head = head[:cut]
    return head.strip() + ELLIPSIS


def build_content(transcript: str | None, question: str = EVAL_QUESTION) -> str:
    """The user turn: optional transcript preamble, the image marker, the question."""
    t = truncate_transcript(transcript)
    if t:
        return f"Audio transcript: {t}\n{IMAGE_MARKER}\n{question}"
    return f"{IMAGE_MARKER}\n{question}"


def chat_wrap(content: str) -> str:
    """Qwen's chat format for one user turn and an open assistant turn (no system, no <think>)."""
    return f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"


def build_prompt(transcript: str | None, question: str = EVAL_QUESTION) -> str:
    return chat_wrap(build_content(transcript, question))


def target_answer(label: bool) -> str:
    """What the model is trained to say: exactly ``Yes.`` / ``No.``, then the end of the turn."""
    return (ANSWER_YES if label else ANSWER_NO) + END_OF_TURN


def _clean(word: str) -> str:
    return _LEADING.sub("", _TRAILING.sub("", word)).lower()


def parse_answer(text: str) -> bool | None:
    """True (sludge), False (not sludge) or None (unparseable) from the generated text."""
    words = [_clean(w) for w in (text or "").split()]
    words = [w for w in words if w]
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    for w in words[:PARSE_WORDS]:
        if w == "yes":
            return True
        if w == "no":
            return False
    return None
