"""Moving the bank and the history to a new embedding model without downtime (``sludge migrate``).

The history is copied video by video into a new generation (search/generations.py) while the live one
keeps answering: each video's frames are decoded again from its stored source at their recorded times,
else read from the thumbnails kept at index time, embedded with the new model, and written with the
same ids. The registry's cursor advances only after a batch is stored, and a video is written in one
piece under the same ids, so a killed run resumes where it stopped, with nothing lost or stored twice.
Then a catch-up pass takes the videos indexed meanwhile, the bank is rebuilt (its old vectors kept),
and one write of the registry switches every new reader over. ``--rollback`` switches back (catching
the old generation up with what arrived since), ``--finish`` drops the old generation.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.errors import ConfigError, MediaError, SludgeError
from indexer.records import FrameRecord, VideoRecord
from ops.faults import fault_point
from search.errors import StoreError
from search.factory import history_registry, open_history
from search.generations import Generation, MigrationState, Registry, RegistryStore, generation_name
from search.history import FrameHistory

if TYPE_CHECKING:
    from indexer.encoders.base import Encoder
    from ops.app import App

#: the encoder settings a generation records, so that readers can follow a switch
ENCODER_KEYS = ("backend", "model", "pretrained", "random_weights", "seed", "image_resize_mode")


class GateRefused(SludgeError):
    """The new model recalls less than the old one on the evaluation pairs: nothing was switched."""


@dataclass
class MigrationReport:
    action: str
    active: Generation
    previous: Generation | None
    state: MigrationState | None = None
    gate: dict[str, Any] | None = None
    bank: dict[str, Any] | None = None
    caught_up: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def encoder_spec(settings: Any) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in ENCODER_KEYS}


class Migrator:
    """One migration's steps over one application's stores. ``progress(done_videos, frames)`` reports."""

    def __init__(self, app: App, *, batch_videos: int = 16,
                 progress: Callable[[int, int], None] | None = None,
                 embed_video: Callable[[VideoRecord, Encoder], tuple[np.ndarray, str]] | None = None) -> None:
        self.app = app
        #: (video, encoder) -> (one vector per frame, "source" | "thumbnails"); a MediaError skips the video
        self.embed_video = embed_video or self._embed_from_media
        self.batch_videos = max(1, batch_videos)
        self.progress = progress or (lambda videos, frames: None)
        s = app.settings
        self._es_url = s.es_url.get_secret_value() if s.es_url is not None else None
        self.store: RegistryStore = history_registry(es_url=self._es_url, elastic=s.elastic,
                                                     history_dir=s.history_dir)

    # -- plumbing --------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.store.prepare()
        with self.store.lock():
            yield

    def _history(self, gen: Generation) -> FrameHistory:
        s = self.app.settings
        h = open_history(es_url=self._es_url, elastic=s.elastic, history_dir=s.history_dir,
                         outbox_dir=s.data_dir / "outbox", model_id=gen.model_id, dim=gen.dim, generation=gen)
        self.app._stores.append(h)
        return h

    def registry(self) -> Registry:
        reg = self.store.read()
        if reg is not None:
            return reg
        with self._history(Generation("", None, None)) as h:  # a history never migrated: what it holds
            h.refresh()  # a server store reads its mapping (and so its model) on first use
            return Registry(active=Generation("", h.model_id, h.dim))

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> MigrationReport:
        reg = self.registry()
        return MigrationReport("status", reg.active, reg.previous, reg.migration)

    # -- migrate ----------------------------------------------------------------------------------
    def migrate(self, new_settings: Any, *, eval_pairs: list[str] | None = None, eval_split: str | None = "test",
                accept_losses: bool = False) -> MigrationReport:
        from indexer.encoders.factory import create_encoder

        with self._locked():
            reg = self.registry()
            old_enc = self.app.encoder
            if reg.active.model_id not in (None, old_enc.model_id):
                raise ConfigError(
                    f"the history answers for {reg.active.model_id} but the configured encoder is {old_enc.model_id}; "
                    "configure the encoder the stores were made with before migrating them")
            s = self.app.settings
            new_enc = create_encoder(new_settings, openvino_cache=s.encoder.openvino_cache or s.data_dir / "openvino",
                                     limits=self.app.limits)
            if new_enc.model_id == reg.active.model_id:
                raise ConfigError(f"the stores already hold {new_enc.model_id}; nothing to migrate")
            if reg.previous is not None and reg.previous.model_id == new_enc.model_id:
                return self._swap(reg, new_enc, "migrate")  # back to the generation a rollback kept
            if reg.previous is not None:
                raise StoreError(
                    f"the generation of {reg.previous.model_id} is still kept from the last migration; "
                    "`sludge migrate --finish` (keep the new one) or `--rollback` first")
            mig = reg.migration
            if mig is not None and mig.target.model_id != new_enc.model_id:
                raise StoreError(
                    f"a migration to {mig.target.model_id} is under way (phase {mig.phase}, {mig.videos} videos "
                    "copied); resume it with the same model, or `sludge migrate --abort`")
            report = MigrationReport("migrate", reg.active, reg.previous)
            if eval_pairs:
                report.gate = gate(self.app, old_enc, new_enc, eval_pairs, eval_split)
                if not report.gate["passed"]:
                    raise GateRefused(report.gate["message"])
            if reg.active.encoder is None:
                reg.active = replace(reg.active, model_id=old_enc.model_id, dim=old_enc.dim,
                                     encoder=encoder_spec(s.encoder))
            if mig is None:
                target = Generation(generation_name(new_enc.model_id), new_enc.model_id, new_enc.dim,
                                    encoder_spec(new_settings))
                mig = MigrationState(uuid.uuid4().hex[:12], target, phase="history", started_at=time.time())
                reg.migration = mig
                self.store.write(reg)
            target = mig.target
            src, dst = self._history(reg.active), self._history(target)
            if mig.phase == "bank" and mig.failed and not accept_losses:
                mig.failed.clear()  # run again after restoring media: the catch-up tries those videos again
                mig.phase, mig.cursor = "catch-up", None
            if mig.phase == "history":
                self._copy(reg, src, dst, new_enc)
                mig.phase, mig.cursor = "catch-up", None
                self.store.write(reg)
            if mig.phase == "catch-up":
                report.caught_up = self._copy(reg, src, dst, new_enc, only_missing=True)
                mig.phase = "bank"
                self.store.write(reg)
            if mig.failed and not accept_losses:
                raise StoreError(
                    f"{len(mig.failed)} video(s) could not be embedded again (first: "
                    + "; ".join(f"{v[:12]}: {r}" for v, r in list(mig.failed.items())[:3])
                    + "); nothing was switched. Restore their sources, or pass --accept-losses to switch without them")
            if mig.phase == "bank":
                report.bank = self._rebuild_bank(new_enc, owner=mig.migration_id)
                mig.phase = "switch"
                self.store.write(reg)
            self._copy_sweeps(src, dst)
            dst.flush_pending()
            if dst.pending():
                raise StoreError(f"{dst.pending()} video(s) of the new generation still wait in the outbox; "
                                 "run `sludge migrate` again when the history is reachable")
            dst.refresh()
            fault_point("migrate.before_switch")  # the bank on the new model, the history not yet
            reg.previous, reg.active, reg.migration = reg.active, target, None
            self.store.write(reg)  # the switch: one write every reader sees whole
            report.active, report.previous, report.state = reg.active, reg.previous, mig
            report.notes.append("policy thresholds are cosine scores of the old model: check them against the new "
                                "one with `sludge bank calibrate --policy P --positives DIR --negatives DIR`")
            return report

    def _copy(self, reg: Registry, src: FrameHistory, dst: FrameHistory, enc: Encoder, *,
              only_missing: bool = False) -> int:
        """Copy ``src`` into ``dst`` with ``enc``'s vectors; resumes after ``reg.migration.cursor``."""
        mig = reg.migration
        assert mig is not None
        copied = 0
        while True:
            t0 = time.perf_counter()
            batch = src.export_videos(mig.cursor, self.batch_videos, with_embeddings=False)
            if not batch:
                return copied
            last = batch[-1][0].video_id
            if only_missing:
                have = dst.get_videos([r.video_id for r, _ in batch])
                batch = [(r, d) for r, d in batch if r.video_id not in have and r.video_id not in mig.failed]
            copied += self._store_batch(mig, batch, dst, enc)
            fault_point("migrate.after_store")  # stored, the cursor not yet moved: the worst moment to die
            mig.cursor = last  # only once the batch is stored: a kill before this copies it again, same ids
            mig.seconds += time.perf_counter() - t0
            mig.updated_at = time.time()
            self.store.write(reg)
            self.progress(mig.videos, mig.frames)

    def _store_batch(self, mig: MigrationState, batch: list[tuple[VideoRecord, str | None]], dst: FrameHistory,
                     enc: Encoder) -> int:
        records, decisions = [], {}
        for rec, decision in batch:
            try:
                vecs, how = self.embed_video(rec, enc)
            except MediaError as e:
                mig.failed[rec.video_id] = e.reason
                continue
            mig.failed.pop(rec.video_id, None)
            frames = [FrameRecord(f.frame_id, f.video_id, f.ts, vecs[i], f.pdq, f.pdq_quality)
                      for i, f in enumerate(rec.frames)]
            records.append(replace(rec, frames=frames, model_id=enc.model_id))
            if decision:
                decisions[rec.video_id] = decision
            mig.from_source += how == "source"
            mig.from_thumbnails += how == "thumbnails"
        if records:
            dst.add_videos(records)
        for vid, decision in decisions.items():  # after a kill these are set again: the same value twice
            dst.set_decision(vid, decision)
        mig.videos += len(records)
        mig.frames += sum(len(r.frames) for r in records)
        return len(records)

    def _embed_from_media(self, rec: VideoRecord, enc: Encoder) -> tuple[np.ndarray, str]:
        images, how = frame_images(rec, self.app.settings.thumbs_dir)
        return np.asarray(enc.embed_images(images), np.float32), how

    def _copy_sweeps(self, src: FrameHistory, dst: FrameHistory) -> None:
        runs, cands = src.sweep_records()
        for run_id, state in runs.items():
            if dst.sweep_state(run_id) is None:
                dst.save_sweep_state(run_id, state)
        if cands:
            dst.upsert_candidates(cands)  # merged per (policy, video): copying twice changes nothing

    def _rebuild_bank(self, enc: Encoder, *, owner: str) -> dict:
        from search.exemplars import reembed

        bank = self.app.bank(with_encoder=False)
        if bank.model_id is None:
            return {"exemplars": 0, "note": "the bank is empty"}
        kept = bank.kept()
        reuse = kept[2] if kept and kept[0] == enc.model_id else {}
        keep_dir = self.app.settings.exemplars_dir

        def fn(ex: Any, old: np.ndarray | None) -> np.ndarray:
            if ex.exemplar_id in reuse:
                return reuse[ex.exemplar_id]
            return reembed(enc, ex, keep_dir)

        rep = bank.rebuild(enc.model_id, enc.dim, fn, keep_previous=True, owner=owner, actor="sludge migrate")
        return {"exemplars": rep.exemplars, "reembedded": rep.reembedded - len(reuse), "reused": len(reuse),
                "index": rep.index}

    # -- rollback / finish / abort -----------------------------------------------------------------
    def rollback(self) -> MigrationReport:
        with self._locked():
            reg = self.registry()
            if reg.previous is None:
                raise StoreError("there is no previous generation to roll back to (never migrated, or finished)")
            return self._swap(reg, self._encoder_of(reg.previous), "rollback")

    def _swap(self, reg: Registry, enc: Encoder, action: str) -> MigrationReport:
        """Switch to the kept generation: what was indexed since the last switch is embedded into it first,
        the bank goes back to its kept vectors, and the generation left becomes the kept one."""
        assert reg.previous is not None
        active, previous = self._history(reg.active), self._history(reg.previous)
        reg.migration = MigrationState(uuid.uuid4().hex[:12], reg.previous, phase="catch-up")
        caught = self._copy(reg, active, previous, enc, only_missing=True)
        failed = dict(reg.migration.failed)
        bank = self._rebuild_bank(enc, owner=reg.migration.migration_id)
        self._copy_sweeps(active, previous)
        previous.flush_pending()
        previous.refresh()
        reg.active, reg.previous, reg.migration = reg.previous, reg.active, None
        self.store.write(reg)
        rep = MigrationReport(action, reg.active, reg.previous, bank=bank, caught_up=caught)
        rep.notes += [f"video {v[:12]} could not be embedded with {enc.model_id}: {r}" for v, r in failed.items()]
        return rep

    def finish(self) -> MigrationReport:
        with self._locked():
            reg = self.registry()
            if reg.previous is None:
                raise StoreError("there is no previous generation to drop (never migrated, or already finished)")
            new_enc = self._encoder_of(reg.active)
            active, previous = self._history(reg.active), self._history(reg.previous)
            # a process still on the old encoder may have written there since the switch
            reg.migration = MigrationState(uuid.uuid4().hex[:12], reg.active, phase="catch-up")
            caught = self._copy(reg, previous, active, new_enc, only_missing=True)
            failed = dict(reg.migration.failed)
            if failed:
                reg.migration = None
                self.store.write(reg)
                raise StoreError(f"{len(failed)} video(s) indexed into the old generation since the switch could "
                                 "not be embedded with the new model; the old generation is kept. First: "
                                 + "; ".join(f"{v[:12]}: {r}" for v, r in list(failed.items())[:3]))
            self._copy_sweeps(previous, active)
            dropped = reg.previous
            reg.previous, reg.migration = None, None
            self.store.write(reg)
            previous.drop()
            self.app.bank(with_encoder=False).drop_kept(actor="sludge migrate")
            return MigrationReport("finish", reg.active, dropped, caught_up=caught,
                                   notes=[f"dropped the generation of {dropped.model_id}"])

    def abort(self) -> MigrationReport:
        """Stop a migration that has not switched: its generation is dropped, the bank goes back."""
        with self._locked():
            reg = self.registry()
            mig = reg.migration
            if mig is None:
                raise StoreError("no migration is under way")
            notes = []
            if mig.phase == "switch":  # the bank already holds the new vectors: back to the kept ones
                bank = self._rebuild_bank(self._encoder_of(reg.active), owner=mig.migration_id)
                self.app.bank(with_encoder=False).drop_kept(actor="sludge migrate")
                notes.append(f"bank back on {reg.active.model_id} ({bank.get('exemplars', 0)} exemplars)")
            self._history(mig.target).drop()
            reg.migration = None
            self.store.write(reg)
            notes.append(f"dropped the unfinished generation of {mig.target.model_id} ({mig.videos} videos)")
            return MigrationReport("abort", reg.active, reg.previous, state=mig, notes=notes)

    def _encoder_of(self, gen: Generation) -> Encoder:
        from indexer.encoders.factory import create_encoder

        if self.app.encoder.model_id == gen.model_id:
            return self.app.encoder
        if not gen.encoder:
            raise ConfigError(f"the generation of {gen.model_id} does not record its encoder settings; configure "
                              "that encoder and run the command again")
        s = self.app.settings
        enc = create_encoder(s.encoder.model_copy(update=gen.encoder),
                             openvino_cache=s.encoder.openvino_cache or s.data_dir / "openvino", limits=self.app.limits)
        if enc.model_id != gen.model_id:
            raise ConfigError(f"the encoder settings recorded for {gen.model_id} now give {enc.model_id} "
                              "(weights changed?); restore them to roll back")
        return enc


def frame_images(rec: VideoRecord, thumbs_dir: Path | None) -> tuple[list[np.ndarray], str]:
    """Each frame's picture again: decoded from the video at its time, else its thumbnail."""
    from indexer.thumbs import list_thumbnails, thumb_name, video_dir

    times = [f.ts for f in rec.frames]
    if rec.path and Path(rec.path).is_file():
        from indexer.video import VideoReader

        try:
            with VideoReader(rec.path) as reader:
                got = {round(f.ts, 3): f.image for f in reader.frames_at(times)}
            images = [got.get(round(t, 3)) for t in times]
            if all(im is not None for im in images):
                return images, "source"  # type: ignore[return-value]
        except SludgeError:
            pass  # changed or damaged since: the thumbnails may still be there
    if thumbs_dir is not None:
        from search.exemplars import read_image

        try:
            have = {name for _, name in list_thumbnails(thumbs_dir, rec.video_id)}
        except ValueError:  # not a content hash: it never had thumbnails
            have = set()
        names = [thumb_name(t) for t in times]
        if names and all(n in have for n in names):
            d = video_dir(thumbs_dir, rec.video_id)
            return [read_image(d / n) for n in names], "thumbnails"
    raise MediaError(rec.path, "the source video is gone (or no longer decodes at the stored times) and "
                               "no thumbnails of its frames were kept")


def gate(app: App, old: Encoder, new: Encoder, files: list[str], split: str | None) -> dict[str, Any]:
    """Recall of both models on the same pairs; passes when the new one's mean recall is not lower."""
    from ops.usecases.encoder import evaluate, prepare, read_pair_files

    pairs, errors = read_pair_files(files)
    ps = prepare(pairs, new, [split] if split else None)
    if not ps.split(split):
        raise ConfigError(f"no usable evaluation pairs in split {split!r} of {', '.join(files)}"
                          + (f" ({len(errors) + len(ps.errors)} could not be read)" if errors or ps.errors else ""))
    before, after = evaluate([old, new], ps, split)
    diff = after.recall["mean"] - before.recall["mean"]
    passed = diff >= 0
    msg = (f"mean recall@1/5/10 both ways on {len(ps.split(split))} pairs: {100 * before.recall['mean']:.1f} % "
           f"({old.model_id}) → {100 * after.recall['mean']:.1f} % ({new.model_id}), {100 * diff:+.1f} points")
    if not passed:
        msg = f"refused to switch: the new model recalls less than the old one; {msg}"
    return {"passed": passed, "message": msg, "before": before.to_dict(), "after": after.to_dict(),
            "difference": round(diff, 4)}
