"""C3 machinery: degeneration measures on hand cases, the PI controller, the corpus loader."""
import numpy as np
import pytest

from stabliab import measures
from stabliab.feedback import PIController
from stabliab.sources import ALPHABET, CharCorpus, clean_play


# ---------------------------------------------------------------- measures, by hand
def test_seq_rep_n_hand_cases():
    assert measures.seq_rep_n([1, 2, 1, 2, 1, 2], 2) == pytest.approx(1 - 2 / 5)  # 5 bigrams, 2 distinct
    assert measures.seq_rep_n([1, 2, 3, 4], 2) == 0.0
    assert measures.seq_rep_n([7, 7, 7, 7, 7], 4) == pytest.approx(1 - 1 / 2)
    assert measures.seq_rep_n([1, 2, 3], 4) == 0.0  # shorter than n
    assert measures.seq_rep_n([], 4) == 0.0


def test_distinct_n_hand_cases():
    assert measures.distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)
    assert measures.distinct_n([[1, 1, 1, 1]], 1) == pytest.approx(1 / 4)
    assert measures.distinct_n([[1], [2]], 2) == 0.0  # no bigrams
    assert measures.distinct_n([], 2) == 0.0


def test_ends_in_loop_hand_cases():
    assert measures.ends_in_loop([9, 8] + [1, 2, 3] * 12, tail=30)
    assert measures.ends_in_loop([4] * 40, tail=32)
    assert not measures.ends_in_loop(list(range(40)), tail=32)
    assert not measures.ends_in_loop([1, 2] * 5, tail=32)  # too short to tell


# ---------------------------------------------------------------- controller and loop
def test_pi_controller_drives_a_toy_plant_to_its_setpoint_with_nonnegative_gain():
    # plant: the statistic drifts up by 0.05 per step, feedback pushes it down by 0.2 * beta
    ctrl = PIController(3, kp=1.0, ki=0.5, beta_max=5.0)
    s, target = np.array([2.0, 1.0, 0.5]), 0.8
    betas = []
    for _ in range(300):
        beta = ctrl.update(s - target)
        betas.append(beta)
        s = s + 0.05 - 0.2 * beta
    betas = np.array(betas)
    assert np.all(betas >= 0) and np.all(betas <= 5.0)
    np.testing.assert_allclose(s, target, atol=0.02)
    assert np.allclose(betas[-1], 0.25, atol=0.02)  # steady state: 0.2 * beta = 0.05


def test_controller_gain_stays_zero_below_setpoint():
    ctrl = PIController(1, kp=2.0, ki=1.0, beta_max=3.0)
    assert all(ctrl.update([-1.0])[0] == 0 for _ in range(10))
    assert ctrl.integral[0] == 0  # anti-windup: no negative integral to unwind


# ---------------------------------------------------------------- corpus
def test_clean_play_strips_markup():
    md = "# Title\n\n## ACT I\n\n_Enter A_\n\n**HAMLET**  \nTo be, or not [to] be:  \n\n\n\nThat is\n"
    assert clean_play(md) == "HAMLET:\nTo be, or not to be:\n\nThat is\n"


def test_shakespeare_corpus_loads_offline_and_holds_out_whole_plays():
    c = CharCorpus.shakespeare(max_train_chars=50_000)
    assert len(c.train) == 50_000 and len(c.heldout) > 100_000
    text = c.decode(c.train)
    assert set(text) <= set(ALPHABET) and "**" not in text and "#" not in text
    assert "THESEUS:" in text  # the first comedy, speaker tags kept
    assert np.array_equal(c.encode(text), c.train)
    assert len(c.heldout_names) >= 3
    w = c.windows("heldout", 64, n=10, seed=1)
    assert w.shape == (10, 64) and np.array_equal(w, c.windows("heldout", 64, n=10, seed=1))
    with pytest.raises(ValueError):
        c.windows("train", 64, n=10**6)
