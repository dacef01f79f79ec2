"""Visual-Qwen assembled: BLIP-2 vision + Q-Former → linear projector → Qwen3 (+ LoRA).

One class serves both loading paths (:mod:`classifier.load`): the components
(BLIP-2 checkpoint, projector file, Qwen3 checkpoint, LoRA adapter) and the
single-model export (a stock ``Blip2ForConditionalGeneration`` whose
submodules are borrowed, not copied). Inference is therefore one code path,
and the two loading paths can only differ in their weights.

How the image gets in: the prompt carries ONE ``<image>`` marker (a special
token); at tokenization it is expanded to 32 copies of the image token id and
the 32 projected query vectors are written into those positions with
``masked_scatter``, exactly as ``Blip2ForConditionalGeneration`` does with a
processor-expanded prompt. So "replace the marker with 32 vectors" and the
stock export's behaviour are the same sequence of embeddings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from classifier.errors import ClassifierError
from classifier.prompt import EVAL_QUESTION, IMAGE_MARKER, build_prompt, parse_answer, target_answer
from classifier.vote import UnparseablePolicy, Vote, majority_vote
from indexer.encoders.blip2 import Blip2ImagePreprocessor, Blip2VisionStack, FeatureCache

MAX_NEW_TOKENS = 8  # the card: greedy, 6 to 8 new tokens


@dataclass
class FrameAnswer:
    ts: float | None
    text: str
    answer: bool | None  # None: unparseable

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "text": self.text,
                "answer": {True: "yes", False: "no", None: "unparseable"}[self.answer]}


@dataclass
class VideoResult:
    path: str
    frames: list[FrameAnswer]
    vote: Vote
    transcript_chars: int = 0
    seconds: float = 0.0
    model_calls: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "sludge" if self.vote.sludge else "not_sludge"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "verdict": self.verdict, "vote": self.vote.to_dict(),
                "frames": [f.to_dict() for f in self.frames], "transcript_chars": self.transcript_chars,
                "model_calls": self.model_calls, "seconds": round(self.seconds, 3), "warnings": self.warnings}


def image_key(img: Any) -> str:
    """Content key of a frame for the Q-Former feature cache."""
    arr = np.ascontiguousarray(np.asarray(img))
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()


class VisualQwen:
    """The confirm model. ``describe()`` says where each part came from (random weights included)."""

    def __init__(
        self,
        vision: Blip2VisionStack,
        projector: nn.Linear,
        lm: nn.Module,
        tokenizer: Any,
        *,
        image_token_id: int,
        device: torch.device,
        dtype: torch.dtype,
        source: dict[str, Any],
        question: str = EVAL_QUESTION,
        max_new_tokens: int = MAX_NEW_TOKENS,
        batch_size: int = 8,
        unparseable: UnparseablePolicy = "drop",
        random_weights: bool = False,
    ) -> None:
        if projector.in_features != vision.hidden_size:
            raise ClassifierError(f"projector takes {projector.in_features}-d inputs but the Q-Former gives "
                                  f"{vision.hidden_size}-d: the projector belongs to another BLIP-2")
        hidden = lm.get_input_embeddings().embedding_dim
        if projector.out_features != hidden:
            raise ClassifierError(f"projector gives {projector.out_features}-d vectors but the language model's "
                                  f"hidden size is {hidden}: the projector belongs to another language model")
        self.vision = vision
        self.projector = projector
        self.lm = lm
        self.tokenizer = tokenizer
        self.image_token_id = int(image_token_id)
        self.device = device
        self.dtype = dtype
        self.source = source
        self.question = question
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.unparseable = unparseable
        self.random_weights = random_weights
        self.preprocess = Blip2ImagePreprocessor(int(vision.config.vision_config.image_size))
        self.cache = FeatureCache()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = [i for i in {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id,
                                     self.pad_id} if isinstance(i, int) and i >= 0]
        got = tokenizer.convert_tokens_to_ids(IMAGE_MARKER)
        if got != self.image_token_id:
            raise ClassifierError(f"the tokenizer maps {IMAGE_MARKER} to {got}, the model expects "
                                  f"{self.image_token_id}: tokenizer and model do not belong together")

    # -- identity --------------------------------------------------------------------

    @property
    def num_queries(self) -> int:
        return self.vision.num_queries

    def describe(self) -> str:
        note = " (RANDOM WEIGHTS: answers are meaningless)" if self.random_weights else ""
        return f"visual-qwen[{self.source.get('kind')}] {self.source.get('id', '')}{note}"

    # -- features ----------------------------------------------------------------------

    @torch.no_grad()
    def qformer_features(self, images: Sequence[Any], *, use_cache: bool = True) -> torch.Tensor:
        """(N, 32, Hq) float32 on CPU; each frame is encoded once and cached by content."""
        keys = [image_key(im) for im in images]
        out: list[torch.Tensor | None] = [self.cache.get(k) if use_cache else None for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        for s in range(0, len(todo), self.batch_size):
            idx = todo[s : s + self.batch_size]
            px = self.preprocess([images[i] for i in idx]).to(self.device)
            feats = self.vision.query_outputs(px).cpu()
            for j, i in enumerate(idx):
                out[i] = feats[j]
                if use_cache:
                    self.cache.put(keys[i], feats[j])
        if not out:
            return torch.zeros(0, self.num_queries, self.vision.hidden_size)
        return torch.stack(out)  # type: ignore[arg-type]

    # -- prompt → embeddings -------------------------------------------------------------

    def prompt_ids(self, transcript: str | None, question: str | None = None) -> list[int]:
        """Token ids of the chat prompt with the single ``<image>`` expanded to 32 image tokens."""
        ids = self.tokenizer(build_prompt(transcript, question or self.question), add_special_tokens=False)["input_ids"]
        n = sum(1 for i in ids if i == self.image_token_id)
        if n != 1:
            raise ClassifierError(f"prompt has {n} image markers, expected exactly one")
        k = ids.index(self.image_token_id)
        return ids[:k] + [self.image_token_id] * self.num_queries + ids[k + 1 :]

    def embed(self, seqs: Sequence[Sequence[int]], feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded inputs_embeds, attention mask and position ids, image vectors spliced in."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[r, width - len(s) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        emb_layer = self.lm.get_input_embeddings()
        emb = emb_layer(ids)
        image_mask = (ids == self.image_token_id) & (mask == 1)
        if int(image_mask.sum()) != feats.shape[0] * self.num_queries:
            raise ClassifierError("image token count does not match the frames given")
        proj = self.projector(feats.to(self.device, self.projector.weight.dtype)).to(emb.dtype)
        emb = emb.masked_scatter(image_mask.unsqueeze(-1), proj)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return emb, mask, pos

    # -- inference -----------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, feats: torch.Tensor, transcripts: Sequence[str | None]) -> list[str]:
        """Greedy answers for frames (features) with their videos' transcripts, in batches."""
        texts: list[str] = []
        for s in range(0, feats.shape[0], self.batch_size):
            f = feats[s : s + self.batch_size]
            seqs = [self.prompt_ids(t) for t in transcripts[s : s + self.batch_size]]
            emb, mask, _ = self.embed(seqs, f)
            out = self.lm.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                                   do_sample=False, num_beams=1, pad_token_id=self.pad_id,
                                   eos_token_id=self.stop_ids, temperature=None, top_p=None, top_k=None)
            if out.shape[1] > self.max_new_tokens:  # some versions return the prompt positions too
                out = out[:, emb.shape[1] :]
            texts.extend(self.tokenizer.batch_decode(out, skip_special_tokens=True))
        return texts

    def classify_frames(self, images: Sequence[Any], transcript: str | None = None,
                        ts: Sequence[float | None] | None = None) -> list[FrameAnswer]:
        feats = self.qformer_features(images)
        texts = self.generate(feats, [transcript] * len(images))
        tss = list(ts) if ts is not None else [None] * len(images)
        return [FrameAnswer(t, x.strip(), parse_answer(x)) for t, x in zip(tss, texts)]

    def classify_batch(self, videos: Sequence[tuple[str, Sequence[Any], Sequence[float], str | None]]) -> list[VideoResult]:
        """Several videos' frames in shared batches: (path, images, times, transcript) each."""
        t0 = time.perf_counter()
        images = [im for _, ims, _, _ in videos for im in ims]
        transcripts = [tr for _, ims, _, tr in videos for _ in ims]
        feats = self.qformer_features(images)
        texts = self.generate(feats, transcripts)
        out, k = [], 0
        per = (time.perf_counter() - t0) / max(len(images), 1)
        for path, ims, tss, tr in videos:
            answers = [FrameAnswer(float(t), x.strip(), parse_answer(x)) for t, x in zip(tss, texts[k : k + len(ims)])]
            k += len(ims)
            out.append(VideoResult(path, answers, majority_vote([a.answer for a in answers], self.unparseable),
                                   transcript_chars=len((tr or "").strip()), seconds=per * len(ims),
                                   model_calls=len(ims)))
        return out

    # -- training ------------------------------------------------------------------------

    def answer_ids(self, label: bool) -> list[int]:
        return self.tokenizer(target_answer(label), add_special_tokens=False)["input_ids"]

    def loss(self, feats: torch.Tensor, transcripts: Sequence[str | None], labels: Sequence[bool]) -> torch.Tensor:
        """Mean token cross-entropy on the answers only (prompt and image positions ignored).

        Left padding puts every answer at the end of its row, so the LM head
        runs on the last few positions only (a 152k-word head over the whole
        prompt would dominate the cost on CPU).
        """
        prompts = [self.prompt_ids(t) for t in transcripts]
        answers = [self.answer_ids(y) for y in labels]
        a = max(len(x) for x in answers)
        emb, mask, pos = self.embed([p + ans for p, ans in zip(prompts, answers)], feats)
        out = self.lm(inputs_embeds=emb, attention_mask=mask, position_ids=pos, logits_to_keep=a + 1)
        logits = out.logits[:, :-1, :].float()  # positions predicting the last a tokens
        target = torch.full((len(answers), a), -100, dtype=torch.long, device=logits.device)
        for r, ans in enumerate(answers):
            target[r, a - len(ans) :] = torch.tensor(ans, device=logits.device)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
