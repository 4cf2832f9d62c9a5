"""Episode sampler: shapes, label remapping, leak-free class splits, determinism."""

from __future__ import annotations

import pytest
import torch

from adaptlab.errors import ConfigError
from adaptlab.tasks.episodes import EpisodeSampler, split_classes


def _data(classes=12, per_class=(7, 9)):
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(per_class[0], per_class[1] + 1, (classes,), generator=g)
    y = torch.arange(classes).repeat_interleave(counts)
    x = y.float().view(-1, 1, 1).expand(-1, 2, 3) + torch.arange(len(y)).view(-1, 1, 1) * 1000  # id in x
    return x, y


def test_shapes_labels_and_membership():
    x, y = _data()
    s = EpisodeSampler(x, y, n_way=4, k_shot=2, q_query=3)
    ep = s.sample(5, torch.Generator().manual_seed(0))
    assert ep.support_x.shape == (5, 8, 2, 3) and ep.query_x.shape == (5, 12, 2, 3)
    assert torch.equal(ep.support_y[0], torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert ep.query_y.shape == (5, 12) and set(ep.query_y.unique().tolist()) == {0, 1, 2, 3}
    for b in range(5):
        assert len(set(ep.classes[b].tolist())) == 4                       # N distinct classes
        for xs, ys in ((ep.support_x[b], ep.support_y[b]), (ep.query_x[b], ep.query_y[b])):
            item = (xs[:, 0, 0] // 1).long() % 1000                          # original class id from x
            assert torch.equal(item, ep.classes[b][ys])                      # label i <-> classes[i]
        ids = torch.cat([ep.support_x[b, :, 0, 0], ep.query_x[b, :, 0, 0]]) // 1000
        assert len(set(ids.long().tolist())) == 20                           # no item used twice


def test_deterministic_under_a_seed_and_different_across_seeds():
    x, y = _data()
    s = EpisodeSampler(x, y, 5, 1, 2)
    a, b = s.sample(3, torch.Generator().manual_seed(7)), s.sample(3, torch.Generator().manual_seed(7))
    c = s.sample(3, torch.Generator().manual_seed(8))
    assert torch.equal(a.query_x, b.query_x) and torch.equal(a.classes, b.classes)
    assert not torch.equal(a.query_x, c.query_x)


def test_every_class_and_item_gets_drawn_uniformly_enough():
    x, y = _data(classes=6, per_class=(8, 8))
    s = EpisodeSampler(x, y, 2, 1, 1)
    ep = s.sample(3000, torch.Generator().manual_seed(0))
    freq = ep.classes.flatten().bincount(minlength=6).double() / (3000 * 2)
    torch.testing.assert_close(freq, torch.full((6,), 1 / 6, dtype=torch.float64),
                               atol=0.02, rtol=0)  # sampling noise of 6000 draws: sd ~0.005
    ids = (ep.support_x[:, :, 0, 0] // 1000).long().flatten()
    assert len(ids.unique()) == len(y)                                        # all items reachable


def test_class_splits_never_leak():
    x, y = _data(classes=20)
    train, val, test = split_classes(torch.arange(20), [0.6, 0.2, 0.2], torch.Generator().manual_seed(0))
    assert len(train) + len(val) + len(test) == 20
    assert not (set(train.tolist()) & set(test.tolist())) and not (set(train.tolist()) & set(val.tolist()))
    s_tr, s_te = EpisodeSampler(x, y, 3, 1, 1, classes=train), EpisodeSampler(x, y, 3, 1, 1, classes=test)
    g = torch.Generator().manual_seed(0)
    assert set(s_tr.sample(200, g).classes.unique().tolist()) <= set(train.tolist())
    assert set(s_te.sample(200, g).classes.unique().tolist()) <= set(test.tolist())


def test_invalid_requests_are_config_errors():
    x, y = _data(per_class=(7, 7))
    with pytest.raises(ConfigError, match="n_way"):
        EpisodeSampler(x, y, 13, 1, 1)
    with pytest.raises(ConfigError, match="k_shot\\+q_query"):
        EpisodeSampler(x, y, 2, 5, 3)
    with pytest.raises(ConfigError, match="fractions"):
        split_classes(torch.arange(4), [0.5, 0.6], torch.Generator())


def test_shard_partitions_the_meta_batch():
    x, y = _data()
    ep = EpisodeSampler(x, y, 3, 1, 1).sample(5, torch.Generator().manual_seed(0))
    parts = [ep.shard(r, 2) for r in range(2)]
    assert [len(p) for p in parts] == [2, 3]
    assert torch.equal(torch.cat([p.query_x for p in parts]), ep.query_x)
