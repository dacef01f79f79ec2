from search.types import Match, Policy, Rule
from search.verdict import decide


def m(policy, score, ex="e1"):
    return Match(ex, policy, "text", "src", score)


def test_best_frame_rule():
    frames = [(0.5, [m("p", 0.2)]), (1.5, [m("p", 0.31, "e2"), m("q", 0.9, "e3")])]
    v = {x.policy: x for x in decide([Policy("p", 0.3), Policy("q", 0.95)], frames)}
    assert v["p"].verdict == "candidate" and v["p"].score == 0.31 and v["p"].frames_over == 1
    assert v["q"].verdict == "clear" and v["q"].score == 0.9
    assert v["p"].matches[0].exemplar_id == "e2" and v["p"].matches[0].ts == 1.5


def test_k_of_n_rule_needs_k_frames():
    frames = [(t, [m("p", s)]) for t, s in [(0.5, 0.5), (1.5, 0.1), (2.5, 0.6), (3.5, 0.2)]]
    assert decide([Policy("p", 0.4, Rule("k_of_n", 2))], frames)[0].verdict == "candidate"
    assert decide([Policy("p", 0.4, Rule("k_of_n", 3))], frames)[0].verdict == "clear"
    # k above the number of sampled frames means every frame
    assert decide([Policy("p", 0.0, Rule("k_of_n", 10))], frames)[0].verdict == "candidate"


def test_policy_without_matches_is_clear_with_no_score():
    v = decide([Policy("p", 0.3)], [(0.5, [])])[0]
    assert v.verdict == "clear" and v.score is None and v.matches == []


def test_evidence_lists_each_exemplar_once_best_first():
    frames = [(0.5, [m("p", 0.5, "a")]), (1.5, [m("p", 0.7, "a"), m("p", 0.6, "b")])]
    v = decide([Policy("p", 0.3)], frames)[0]
    assert [(x.exemplar_id, x.score) for x in v.matches] == [("a", 0.7), ("b", 0.6)]
