"""One behaviour, two backends: every test here runs on the embedded bank and on Redis.

The CLI, `check` and the cascade are written against :class:`ExemplarBank`
alone; this suite is what makes "works on the embedded bank" mean "works on
Redis" too (scores on the same cosine scale, same dedupe, same errors, same
audit log, same PDQ rule).
"""

from __future__ import annotations

import numpy as np
import pytest

from indexer.errors import ConfigError
from search.bank import ExemplarBank
from search.errors import ModelMismatchError, NotFoundError, StoreError
from search.types import Exemplar, Policy, Rule
from search.verdict import decide

DIM = 32
MODEL = "test/model"


@pytest.fixture(params=["local", "redis"])
def make_bank(request, tmp_path):
    """A factory opening the same bank again and again (for reopen tests)."""
    if request.param == "local":
        from search.local.bank import LocalBank

        opened = []

        def make(model_id=MODEL, dim=DIM):
            b = LocalBank(tmp_path / "bank", model_id=model_id, dim=dim)
            opened.append(b)
            return b

        yield make
        for b in opened:
            b.close()
    else:
        factory = request.getfixturevalue("make_redis_bank")

        def make(model_id=MODEL, dim=DIM):
            return factory(model_id, dim)

        yield make


@pytest.fixture
def bank(make_bank) -> ExemplarBank:
    return make_bank()


def unit(rng, n=1, dim=DIM):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ex(policy, name, kind="text", pdq=None, q=None, model=MODEL):
    return Exemplar("", policy, kind, name, f"hash-{name}", model, pdq=pdq, pdq_quality=q)


def flip(hex_hash: str, nbits: int, low: bool = False) -> str:
    """The hash with its first (or last) ``nbits`` bits inverted (Hamming distance nbits)."""
    mask = (1 << nbits) - 1
    v = int(hex_hash, 16) ^ (mask if low else mask << (256 - nbits))
    return f"{v:064x}"


def test_add_dedupe_get_list_counts_remove(bank):
    rng = np.random.default_rng(0)
    bank.create_policy(Policy("sludge", 0.3))
    bank.create_policy(Policy("other", 0.5))
    v = unit(rng, 3)
    first = bank.add(ex("sludge", "split screen"), v[0], actor="alice")
    again = bank.add(ex("sludge", "split screen"), v[0], actor="bob")
    assert first.created and not again.created
    assert again.exemplar.exemplar_id == first.exemplar.exemplar_id
    assert again.exemplar.added_by == "alice"
    bank.add(ex("sludge", "pip", kind="image"), v[1])
    bank.add(ex("other", "grid"), v[2])
    assert bank.counts() == {"other": {"total": 1, "enabled": 1}, "sludge": {"total": 2, "enabled": 2}}
    assert {e.source for e in bank.list(policy="sludge")} == {"split screen", "pip"}
    assert [e.source for e in bank.list(kind="image")] == ["pip"]
    got = bank.get(first.exemplar.exemplar_id)
    assert got is not None and got.source == "split screen" and got.model_id == MODEL and got.enabled
    assert bank.resolve(first.exemplar.exemplar_id[:8]).exemplar_id == first.exemplar.exemplar_id
    stored = bank.vectors([first.exemplar.exemplar_id])[first.exemplar.exemplar_id]
    assert np.allclose(stored, v[0], atol=1e-6)
    removed = bank.remove(first.exemplar.exemplar_id[:8], actor="carol")
    assert removed.exemplar_id == first.exemplar.exemplar_id
    assert bank.get(removed.exemplar_id) is None
    assert bank.counts()["sludge"] == {"total": 1, "enabled": 1}
    with pytest.raises(NotFoundError):
        bank.remove("nonexistent")


def test_knn_scores_are_exact_cosine_and_respect_enable_and_policy(bank):
    rng = np.random.default_rng(1)
    vecs = unit(rng, 8)
    bank.create_policy(Policy("a", 0.5))
    bank.create_policy(Policy("b", 0.5))
    ids = [bank.add(ex("a" if i < 4 else "b", f"t{i}"), v).exemplar.exemplar_id for i, v in enumerate(vecs)]
    res = bank.knn(vecs[[0, 5]], k=3)
    assert res[0][0].exemplar_id == ids[0] and res[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert res[1][0].exemplar_id == ids[5]
    expected = sorted((float(vecs[0] @ v) for v in vecs), reverse=True)[:3]
    assert [m.score for m in res[0]] == pytest.approx(expected, abs=1e-5)
    assert all(-1.0 <= m.score <= 1.0 and m.signal == "embedding" for m in res[0])
    # opposite vector: cosine -1 on every backend (Redis reports distance 2)
    assert bank.knn(-vecs[[0]], k=8)[0][-1].score == pytest.approx(-1.0, abs=1e-5)
    only_b = bank.knn(vecs[[0]], k=10, policies=["b"])[0]
    assert {m.policy for m in only_b} == {"b"} and len(only_b) == 4
    assert bank.knn(vecs[[0]], k=3, policies=[]) == [[]]
    bank.set_enabled(ids[0], False, actor="alice")
    assert ids[0] not in {m.exemplar_id for m in bank.knn(vecs[[0]], k=8)[0]}
    assert bank.counts()["a"] == {"total": 4, "enabled": 3}
    assert [e.exemplar_id for e in bank.list(enabled=False)] == [ids[0]]
    bank.set_enabled(ids[0], True)
    assert bank.knn(vecs[[0]], k=1)[0][0].exemplar_id == ids[0]
    with pytest.raises(StoreError, match="dimensions"):
        bank.knn(np.ones((1, DIM + 1), np.float32), k=1)


def test_bad_input_is_refused_and_nothing_is_written(bank):
    rng = np.random.default_rng(2)
    with pytest.raises(NotFoundError, match="unknown policy 'nope'"):
        bank.add(ex("nope", "x"), unit(rng)[0])
    bank.create_policy(Policy("p", 0.2))
    with pytest.raises(ModelMismatchError, match="33 dimensions.*'x'|'x'.*33 dimensions"):
        bank.add(ex("p", "x"), np.ones(DIM + 1, np.float32))
    with pytest.raises(ConfigError, match="zero or not finite"):
        bank.add(ex("p", "x"), np.zeros(DIM, np.float32))
    with pytest.raises(ModelMismatchError, match="other/model"):
        bank.add(ex("p", "x", model="other/model"), unit(rng)[0])
    with pytest.raises(ConfigError, match="PDQ"):
        bank.add(ex("p", "x", kind="image", pdq="zz", q=90), unit(rng)[0])
    with pytest.raises(ConfigError, match="invalid policy name"):
        bank.create_policy(Policy("bad name!", 0.3))
    with pytest.raises(ConfigError, match="threshold"):
        bank.create_policy(Policy("t", 1.5))
    assert bank.list() == [] and bank.counts() == {}
    assert [a.action for a in bank.audit()] == ["policy.create"]


def test_policies_rules_and_audit(bank):
    p = bank.create_policy(Policy("sludge", 0.3), actor="alice")
    assert p.rule == Rule("best") and p.created_at
    with pytest.raises(StoreError, match="already exists"):
        bank.create_policy(Policy("sludge", 0.9))
    bank.put_policy(Policy("sludge", 0.4, Rule.parse("k_of_n:2"), "stacked feeds"), actor="bob")
    got = bank.get_policy("sludge")
    assert str(got.rule) == "k_of_n:2" and got.threshold == 0.4 and got.created_at == p.created_at
    assert [x.name for x in bank.list_policies()] == ["sludge"]
    with pytest.raises(NotFoundError, match="policy add"):
        bank.require_policy("missing")
    log = bank.audit(target="sludge")
    assert [(e.action, e.actor) for e in log] == [("policy.update", "bob"), ("policy.create", "alice")]
    assert log[0].before["threshold"] == 0.3 and log[0].after["threshold"] == 0.4
    assert log[0].after["rule"] == "k_of_n:2"


def test_audit_log_records_every_change_newest_first(bank):
    rng = np.random.default_rng(3)
    bank.create_policy(Policy("p", 0.3), actor="alice")
    eid = bank.add(ex("p", "one"), unit(rng)[0], actor="alice").exemplar.exemplar_id
    bank.add(ex("p", "one"), unit(rng)[0], actor="bob")  # no-op: not logged
    bank.set_enabled(eid, False, actor="bob")
    bank.set_enabled(eid, False, actor="bob")  # no change: not logged
    bank.remove(eid, actor="carol")
    log = bank.audit()
    assert [(e.action, e.actor) for e in log] == [
        ("exemplar.remove", "carol"), ("exemplar.disable", "bob"), ("exemplar.add", "alice"),
        ("policy.create", "alice")]
    assert log[0].before["source"] == "one" and log[0].after is None
    assert log[1].before["enabled"] is True and log[1].after["enabled"] is False
    assert log[2].before is None and log[2].after["exemplar_id"] == eid
    assert all(e.ts > 0 for e in log) and len({e.entry_id for e in log}) == 4
    assert [e.action for e in bank.audit(target=eid)] == ["exemplar.remove", "exemplar.disable", "exemplar.add"]
    assert len(bank.audit(limit=2)) == 2


def test_pdq_matches_within_31_bits_with_quality_50(bank):
    rng = np.random.default_rng(4)
    base = f"{int(rng.integers(0, 2**63)):016x}" * 4
    bank.create_policy(Policy("reupload", 0.99))
    bank.create_policy(Policy("other", 0.99))
    good = bank.add(ex("reupload", "img", "image", base, 90), unit(rng)[0]).exemplar.exemplar_id
    bank.add(ex("reupload", "flat", "image", flip(base, 2), 20), unit(rng)[0])  # low quality: never matches
    far = bank.add(ex("other", "far", "frame", flip(base, 40, low=True), 90), unit(rng)[0]).exemplar.exemplar_id
    bank.add(ex("other", "text-only"), unit(rng)[0])  # no hash at all
    res = bank.pdq_match([(base, 80), (flip(base, 31), 80), (flip(base, 32), 80), (base, 49), None,
                          (flip(base, 40, low=True), 60)])
    assert [(m.exemplar_id, m.distance, m.signal) for m in res[0]] == [(good, 0, "pdq")]
    assert res[0][0].score == pytest.approx(1.0)
    assert [(m.exemplar_id, m.distance) for m in res[1]] == [(good, 31)]
    assert res[1][0].score == pytest.approx(1 - 31 / 128)
    assert res[2] == [] and res[3] == [] and res[4] == []
    assert [m.exemplar_id for m in res[5]] == [far]
    assert bank.pdq_match([(base, 80)], policies=["other"]) == [[]]
    bank.set_enabled(good, False)
    assert bank.pdq_match([(base, 80)]) == [[]]
    # a PDQ match reaches a policy's verdict whatever its cosine threshold
    bank.set_enabled(good, True)
    frames = [(0.5, bank.knn(unit(rng), 3)[0] + bank.pdq_match([(flip(base, 10), 90)])[0])]
    verdicts = {v.policy: v for v in decide(bank.list_policies(), frames)}
    assert verdicts["reupload"].verdict == "candidate"
    assert verdicts["reupload"].matches[0].signal == "pdq"


def test_reopen_keeps_everything_and_refuses_another_model(make_bank):
    rng = np.random.default_rng(5)
    v = unit(rng, 3)
    bank = make_bank()
    bank.create_policy(Policy("p", 0.25, Rule("k_of_n", 2)))
    ids = [bank.add(ex("p", f"t{i}"), x).exemplar.exemplar_id for i, x in enumerate(v)]
    bank.set_enabled(ids[2], False)
    before = bank.knn(v, 2)
    again = make_bank()
    assert again.knn(v, 2) == before
    assert str(again.get_policy("p").rule) == "k_of_n:2"
    assert [e.exemplar_id for e in again.list(enabled=False)] == [ids[2]]
    assert again.model_id == MODEL and again.dim == DIM
    with pytest.raises(ModelMismatchError, match="test/model"):
        make_bank("other/model", DIM)


def test_rebuild_for_new_model_switches_whole(bank):
    rng = np.random.default_rng(6)
    bank.create_policy(Policy("p", 0.3))
    old = unit(rng, 4)
    ids = [bank.add(ex("p", f"t{i}"), x).exemplar.exemplar_id for i, x in enumerate(old)]
    new_dim = 8
    new = {eid: unit(rng, 1, new_dim)[0] for eid in ids}

    def failing(e, vec):
        if e.exemplar_id == ids[-1]:
            raise StoreError("source gone")
        return new[e.exemplar_id]

    with pytest.raises(StoreError):
        bank.rebuild("new/model", new_dim, failing)
    assert bank.model_id == MODEL and bank.knn(old[[0]], 1)[0][0].exemplar_id == ids[0]  # unchanged

    seen_old = []
    rep = bank.rebuild("new/model", new_dim, lambda e, vec: seen_old.append(vec) or new[e.exemplar_id],
                       actor="alice")
    assert seen_old == [None] * 4  # another model: nothing to copy
    assert rep.exemplars == 4 and rep.reembedded == 4 and rep.new_model == "new/model"
    assert bank.model_id == "new/model" and bank.dim == new_dim
    top = bank.knn(new[ids[1]][None, :], 1)[0][0]
    assert top.exemplar_id == ids[1] and top.score == pytest.approx(1.0, abs=1e-5)
    assert {e.model_id for e in bank.list()} == {"new/model"}
    assert bank.audit(limit=1)[0].action == "bank.rebuild"
    # same model again: vectors are copied, not re-embedded
    rep2 = bank.rebuild("new/model", new_dim, lambda e, vec: vec)
    assert rep2.copied == 4 and rep2.reembedded == 0
    assert bank.knn(new[ids[2]][None, :], 1)[0][0].exemplar_id == ids[2]


def test_add_many_checks_everything_first_then_adds_like_add(bank):
    rng = np.random.default_rng(7)
    bank.create_policy(Policy("p", 0.3))
    v = unit(rng, 4)
    with pytest.raises(ModelMismatchError):
        bank.add_many([(ex("p", "a"), v[0]), (ex("p", "b"), np.ones(DIM + 3, np.float32))])
    with pytest.raises(NotFoundError):
        bank.add_many([(ex("p", "a"), v[0]), (ex("missing", "b"), v[1])])
    assert bank.list() == []
    first = bank.add(ex("p", "a"), v[0])
    res = bank.add_many([(ex("p", "a"), v[0]), (ex("p", "b"), v[1]), (ex("p", "c"), v[2])], actor="alice")
    assert [r.created for r in res] == [False, True, True]
    assert res[0].exemplar.exemplar_id == first.exemplar.exemplar_id
    assert bank.counts() == {"p": {"total": 3, "enabled": 3}}
    assert bank.knn(v[[2]], 1)[0][0].exemplar_id == res[2].exemplar.exemplar_id
    assert [a.actor for a in bank.audit(limit=2)] == ["alice", "alice"]


def test_labels_are_kept_audited_and_superseded(make_bank):
    from search.types import Label

    bank = make_bank()
    bank.create_policy(Policy("p", 0.25))
    vid, other = "a" * 64, "b" * 64
    first = bank.add_label(Label("p", vid, "confirm", "api:k1", subject="decision", score=0.31, path="/v/a.mp4"))
    assert first.label_id and first.at > 0
    bank.add_label(Label("p", other, "dismiss", "api:k2", subject="candidate", score=None))
    bank.add_label(Label("p", vid, "dismiss", "api:k2", note="on a second look"))
    got = bank.labels("p")
    assert [(lab.video_id, lab.verdict) for lab in got] == [(vid, "confirm"), (other, "dismiss"), (vid, "dismiss")]
    assert got[0].score == 0.31 and got[0].path == "/v/a.mp4" and got[1].score is None
    assert [lab.verdict for lab in bank.labels(video_id=vid)] == ["confirm", "dismiss"]
    latest = {lab.video_id: lab.verdict for lab in bank.latest_labels("p")}
    assert latest == {vid: "dismiss", other: "dismiss"}
    audit = bank.audit(10, target="p")
    assert [e.action for e in audit[:3]] == ["label.dismiss", "label.dismiss", "label.confirm"]
    assert audit[0].actor == "api:k2" and audit[0].after["note"] == "on a second look"
    with pytest.raises(NotFoundError):
        bank.add_label(Label("nope", vid, "confirm", "x"))
    with pytest.raises(ConfigError):
        bank.add_label(Label("p", vid, "maybe", "x"))
    with pytest.raises(ConfigError):
        bank.add_label(Label("p", "not-a-hash", "confirm", "x"))
    assert len(make_bank().labels()) == 3  # reopened: still there


def test_a_label_can_be_retracted_and_then_none_is_in_force(make_bank):
    """The console's Undo: labels stay append-only; a retraction supersedes, leaving no label in force."""
    from search.types import Label

    bank = make_bank()
    bank.create_policy(Policy("p", 0.25))
    vid = "c" * 64
    bank.add_label(Label("p", vid, "confirm", "api:k1", subject="recall"))
    bank.add_label(Label("p", vid, "retract", "api:k1", subject="recall"))
    assert [lab.verdict for lab in bank.labels(video_id=vid)] == ["confirm", "retract"]
    assert bank.latest_labels("p") == []
    assert bank.audit(1, target="p")[0].action == "label.retract"
    bank.add_label(Label("p", vid, "dismiss", "api:k1"))
    assert [lab.verdict for lab in bank.latest_labels("p")] == ["dismiss"]

