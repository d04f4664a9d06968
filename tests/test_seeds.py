"""Named random streams: deterministic, independent across names, seeds and keys, refused when unnamed."""
import numpy as np
import pytest

from stabliab import seeds


def test_a_stream_is_deterministic_and_fits_every_generator():
    a = seeds.stream("data", 3)
    assert a == seeds.stream("data", 3) and 0 <= a < 2**63
    assert seeds.generator("data", 3).initial_seed() == a
    assert seeds.rng("data", 3).integers(1 << 30) == np.random.default_rng(a).integers(1 << 30)


def test_streams_differ_across_names_seeds_and_keys():
    values = {seeds.stream(n, s, *k) for n in seeds.STREAMS for s in range(20) for k in [(), (0,), (1,)]}
    assert len(values) == len(seeds.STREAMS) * 20 * 3
    # consecutive replicates' streams are not shifted copies of each other
    x0, x1 = (seeds.rng("data", s).random(1000) for s in (0, 1))
    assert abs(np.corrcoef(x0, x1)[0, 1]) < 0.15 and not np.allclose(x0[1:], x1[:-1])


def test_an_unnamed_stream_is_refused_naming_the_allowed_ones():
    with pytest.raises(KeyError, match="unknown random stream 'dat'; allowed: data"):
        seeds.stream("dat", 0)
