"""Adapting the encoder: pairs in, a fine-tuned model out, recall measured before and after.

``sludge encoder pairs|finetune|eval`` are thin shells over these. The encoder to start from (or to
measure) is the configured one unless a model, weights or ``random_weights`` are named; a fine-tuned
checkpoint folder is named by path, as ``encoder.pretrained`` names it in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.encoders.pairs import (
    Pair,
    PairError,
    assign_splits,
    load_pictures,
    read_pairs,
    read_seed_pairs,
    select,
    usable,
)

if TYPE_CHECKING:
    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.encoders.retrieval import RetrievalReport
    from ops.app import App


@dataclass
class PairSet:
    """Pairs ready for a model: split, with texts that fit it and pictures decoded; what failed, why."""

    pairs: list[Pair]
    pictures: dict
    errors: list[PairError] = field(default_factory=list)

    def split(self, name: str | None) -> list[Pair]:
        return select(self.pairs, name)


def open_clip_encoder(app: App, *, model: str | None = None, pretrained: str | None = None,
                      random_weights: bool | None = None, seed: int | None = None) -> OpenClipEncoder:
    """An open_clip encoder on PyTorch (training and its measurement need the torch model itself)."""
    from indexer.encoders.openclip import OpenClipEncoder
    from indexer.errors import ConfigError

    s = app.settings.encoder
    if s.backend != "open_clip" and model is None and pretrained is None:
        raise ConfigError(f"encoder.backend is {s.backend!r}: fine-tuning and retrieval evaluation take an "
                          "open_clip model (name one with --model/--pretrained)")
    rw = s.random_weights if random_weights is None else random_weights
    return OpenClipEncoder(model or s.model, pretrained if pretrained is not None else s.pretrained,
                           random_weights=rw and pretrained is None, seed=s.seed if seed is None else seed,
                           image_resize_mode=s.image_resize_mode, batch_size=s.batch_size,
                           threads=s.threads, device=s.device)


def read_pair_files(files: Sequence[str | Path], seed_tsv: str | None = None, seed_jsonl: str | None = None,
                    split_seed: int = 0) -> tuple[list[Pair], list[PairError]]:
    """Every pair of the JSONL files (and of the seed's TSV+JSONL), splits given where missing."""
    pairs: list[Pair] = []
    errors: list[PairError] = []
    for f in files:
        p, e = read_pairs(f)
        pairs += p
        errors += e
    if seed_tsv or seed_jsonl:
        if not (seed_tsv and seed_jsonl):
            raise PairError("seed format", "give both the TSV of images and the JSONL of texts")
        p, e = read_seed_pairs(seed_tsv, seed_jsonl)
        pairs += p
        errors += e
    return assign_splits(pairs, seed=split_seed), errors


def prepare(pairs: Sequence[Pair], encoder: Any, splits: Sequence[str] | None = None) -> PairSet:
    """Keep the pairs of ``splits`` whose text fits the encoder and whose picture decodes."""
    chosen = [p for p in pairs if splits is None or p.split in splits]
    errors: list[PairError] = []
    limit = getattr(encoder, "max_text_tokens", None)
    fitting = []
    tokens: dict[str, int] = {}  # a caption is shared by every frame of its video: count it once
    for p in chosen:
        if limit and hasattr(encoder, "count_tokens") and p.text not in tokens:
            tokens[p.text] = encoder.count_tokens(p.text)
        n = tokens.get(p.text, 0)
        if limit and n > limit:
            errors.append(PairError(p.where or p.picture, f"the text needs {n} tokens; the model reads at most "
                                                          f"{limit}, and would silently cut the rest"))
            continue
        fitting.append(p)
    pictures, picture_errors = load_pictures(fitting)
    return PairSet(usable(fitting, pictures), pictures, errors + picture_errors)


def pairs_from_sets(set_dirs: Sequence[str | Path], frames: int, seed: int, split: str | None) -> list[Pair]:
    from ops.synthetic.pairs import pairs_from_set

    out: list[Pair] = []
    for d in set_dirs:
        out += pairs_from_set(d, frames=frames, seed=seed, split=split)
    return out


def pairs_from_bank(app: App, split: str | None = None) -> tuple[list[Pair], list[PairError]]:
    """Each image and frame exemplar of the bank with each text exemplar and the description of its policy.

    A policy with no text has nothing to pair its pictures with: it is reported, not guessed at.
    """
    from search.exemplars import frame_source

    bank = app.bank(with_encoder=False)
    out: list[Pair] = []
    errors: list[PairError] = []
    for policy in bank.list_policies():
        texts = policy_texts(bank, policy)
        pictures = [e for e in bank.list(policy=policy.name, enabled=True) if e.kind != "text"]
        if pictures and not texts:
            errors.append(PairError(f"bank policy {policy.name}", "no text exemplar or description to pair its "
                                                                   f"{len(pictures)} pictures with"))
            continue
        for e in pictures:
            where = f"bank {policy.name}/{e.exemplar_id}"
            if e.kind == "frame":
                path, ts = frame_source(e.source)
                picture = {"video": path, "ts": ts}
            else:
                picture = {"image": e.source}
            out += [Pair(text=t, policy=policy.name, split=split, group=f"bank:{e.exemplar_id}", where=where,
                         **picture) for t in dict.fromkeys(texts)]
    return out, errors


def policy_texts(bank, policy) -> list[str]:
    """What a policy says in words: its text exemplars and its description."""
    texts = [e.source for e in bank.list(policy=policy.name, enabled=True) if e.kind == "text"]
    return list(dict.fromkeys(texts + ([policy.description] if policy.description else [])))


def pairs_from_labels(app: App, policy: str | None = None, frames: int = 4
                      ) -> tuple[list[Pair], list[PairError]]:
    """Frames of the videos reviewers confirmed, each with every text of the policy they confirmed.

    The latest label per policy and video counts (a dismissal or retraction after a confirmation
    removes it). Frames are spread evenly over the video; the video is the group, so its frames
    stay in one split.
    """
    from indexer.errors import MediaError
    from indexer.video import probe

    bank = app.bank(with_encoder=False)
    history = app.history(with_encoder=False)
    out: list[Pair] = []
    errors: list[PairError] = []
    texts: dict[str, list[str]] = {}
    for lab in bank.latest_labels(policy):
        if lab.verdict != "confirm":
            continue
        where = f"label {lab.policy}/{lab.video_id[:12]}"
        if lab.policy not in texts:
            pol = bank.get_policy(lab.policy)
            texts[lab.policy] = policy_texts(bank, pol) if pol else []
        if not texts[lab.policy]:
            errors.append(PairError(where, f"policy {lab.policy!r} has no text exemplar or description to pair with"))
            continue
        if not lab.path or not Path(lab.path).is_file():
            errors.append(PairError(where, "the video file is no longer on this machine"))
            continue
        stored = history.get_video(lab.video_id)
        try:
            duration = stored.duration if stored and stored.duration else probe(lab.path).duration
        except MediaError as e:
            errors.append(PairError(where, str(e)))
            continue
        for k in range(frames):
            ts = round(duration * (k + 0.5) / frames, 3)
            out += [Pair(text=t, video=lab.path, ts=ts, policy=lab.policy, group=f"video:{lab.video_id}",
                         where=where) for t in texts[lab.policy]]
    return out, errors


def finetune(pairs: PairSet, out: str | Path, config: Any, *, encoder: OpenClipEncoder,
             overwrite: bool = False, progress=None):
    from indexer.encoders.finetune import finetune as run

    kw = {"progress": progress} if progress is not None else {}
    return run(encoder, pairs.split("train"), pairs.split("val"), pairs.pictures, out, config, overwrite=overwrite,
               **kw)


def evaluate(encoders: Sequence[Any], pairs: PairSet, split: str | None, *, resamples: int = 1000,
             seed: int = 0) -> list[RetrievalReport]:
    """Each encoder's recall on the same pairs, for a before/after table."""
    from indexer.encoders.retrieval import evaluate as score

    chosen = pairs.split(split)
    if not chosen:
        raise PairError(f"split {split}", "no pairs to evaluate on")
    return [score(e, chosen, pairs.pictures, resamples=resamples, seed=seed) for e in encoders]
