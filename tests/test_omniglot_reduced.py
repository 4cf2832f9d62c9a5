"""Reduced runs of MAML, first-order MAML and the pretrained-feature baselines on real Omniglot: each beats
chance (20% for 5-way) by a wide margin on alphabets never seen in training, and beats its untrained self."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptlab.data.omniglot import load_characters
from adaptlab.eval.oneshot20 import episode_accuracy
from adaptlab.experiments.omniglot import held_out
from adaptlab.meta.baselines import embed_episodes, logistic_head_logits, nearest_neighbour_logits, pretrain_classifier
from adaptlab.meta.maml import MAML
from adaptlab.models.conv4 import Conv4
from adaptlab.tasks.episodes import EpisodeSampler


@pytest.fixture(scope="module")
def data():
    x, y = load_characters("small1").with_rotations().labelled()
    tx, ty = held_out("small1").labelled()                       # Japanese (katakana), Sanskrit, Tagalog
    return x, y, EpisodeSampler(tx, ty, 5, 1, 3)


@pytest.mark.parametrize("first_order", [True, False])
def test_reduced_maml_beats_chance_on_unseen_alphabets(data, first_order):
    x, y, test = data
    torch.manual_seed(0)
    maml = MAML(Conv4(hidden=16, n_classes=5), F.cross_entropy, inner_lr=0.4, steps=1, first_order=first_order)
    opt = torch.optim.Adam(maml.parameters(), lr=3e-3)

    def predict(sx, sy, qx, n):
        return maml.adapt_tasks(sx, sy, steps=3, x_eval=qx)["pred"][:, -1]

    before = episode_accuracy(predict, test, 100, torch.Generator().manual_seed(1))["accuracy"]
    g, train = torch.Generator().manual_seed(0), EpisodeSampler(x, y, 5, 1, 2)
    for _ in range(40):
        ep = train.sample(2, g)
        loss = maml.meta_loss(ep.support_x, ep.support_y, ep.query_x, ep.query_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = episode_accuracy(predict, test, 100, torch.Generator().manual_seed(1))["accuracy"]
    assert after > 0.38 and after > before                      # chance is 0.2; 40 meta-steps only


def test_reduced_pretrained_feature_baselines_beat_pixels(data):
    _, _, test = data
    x, y = load_characters("small1").labelled()               # 136 classes: a classifier learns them fast
    torch.manual_seed(0)
    net = Conv4(hidden=16, n_classes=136, track_running_stats=True)
    pretrain_classifier(net, x, y, steps=120, batch=64, lr=3e-3, generator=torch.Generator().manual_seed(0))
    net.eval()

    def predict(sx, sy, qx, n):
        zs, zq = embed_episodes(net.embed, sx, qx)
        return {"pixel": nearest_neighbour_logits(sx.flatten(2), sy, qx.flatten(2), n),
                "feature": nearest_neighbour_logits(zs, sy, zq, n), "finetune": logistic_head_logits(zs, sy, zq, n)}

    res = episode_accuracy(predict, test, 100, torch.Generator().manual_seed(1))
    assert res["feature"]["accuracy"] > 0.6 and res["finetune"]["accuracy"] > 0.6
    assert res["feature"]["accuracy"] > res["pixel"]["accuracy"] + 0.1
