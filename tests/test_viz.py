"""viz: every figure function draws from a results dict alone and returns a Figure (saving is the caller's)."""

from __future__ import annotations

import os

import matplotlib
import pytest

from adaptlab import viz
from adaptlab.io import save_figure

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

CURVE = {"n": [1, 2, 4], "mean": [1.0, 0.5, 0.2], "p10": [0.8, 0.4, 0.1], "p90": [1.2, 0.6, 0.3]}
FOURIER = {"curves": {"meta": CURVE, "init": CURVE, "oracle": CURVE, "chance": CURVE}, "noise_var": 0.01,
           "support": [1, 2], "history": [{"step": 0, "feature_weights": [1.0, 1.0, 1.0]},
                                          {"step": 5, "feature_weights": [0.1, 2.0, 1.5]}],
           "example": {"x": [0.0, 0.5, 1.0], "truth": [0.0, 1.0, 0.0], "meta": [0.1, 0.9, 0.0],
                       "x_train": [0.5], "y_train": [1.0], "n": 1}}
MTL = {"pareto": [{"w_left": 0.5, "left": 90.0, "right": 88.0}],
       "methods": {"single": {"left": 91.0, "right": 89.0, "left_std": 0.1, "right_std": 0.2},
                   "equal": {"left": 90.0, "right": 88.5, "left_std": 0.3, "right_std": 0.1}},
       "conflict": {"equal": {"cosine": [0.1, -0.2, 0.3]}},
       "cka": {"names": ["a", "b"], "matrix": [[1.0, 0.4], [0.4, 1.0]]}}
OMNIGLOT = {"method": "maml", "mhd": {"error": 38.8},
            "published": {"deep convnet (minimal 1)": 24.0, "deep convnet (minimal 2)": 29.0,
                          "modified Hausdorff distance": 38.8},
            "backgrounds": {"small1": {"history": {"curve_seconds": [0, 60], "curve_error": [90.0, 50.0]},
                                       "oneshot20": {"maml": {"error": 50.0}},
                                       "episodic": {"maml": {"5-way 1-shot": {"accuracy": 0.8, "ci95": 0.02}}}}}}
TOY = {"methods": ["mean"], "paths": {"mean": [[[0.0, 0.0], [0.5, 0.5]]]}, "pareto_points": [[0.0, 1.0], [1.0, 0.0]],
       "grid": {"x": [[0.0, 1.0], [0.0, 1.0]], "y": [[0.0, 0.0], [1.0, 1.0]], "loss": [[1.0, 2.0], [2.0, 3.0]],
                "pareto": [[-1.0, 0.0], [0.0, 1.0]]}}

TAGGING = {"domains": ["a", "b"], "settings": ["chunk", "pos@1"], "n_train": 10,
           "chunk_f1": {"a": {"chunk": [80.0, 1.0], "pos@1": [82.0, 0.5]},
                        "b": {"chunk": [70.0, 2.0], "pos@1": [71.0, 0.0]}}}

CAPTION = {"decoders": {"joint": {"train_loss": [2.0, 1.0, 0.5],
                                  "example": {"image": [[[0.0] * 4] * 4], "words": [["a", "small"]],
                                              "maps": [[[0.25] * 4, [0.1, 0.2, 0.3, 0.4], [0.25] * 4]]}}}}
VIT = {"accuracy": {"global": {"56": 90.0, "112": 80.0}, "windowed": {"56": 89.0}},
       "cost": {"global": {"56": 1e7, "112": 7e7}, "windowed": {"56": 9e6, "112": 3e7}},
       "timings": {"forward_seconds": {"global": {"56": 0.01, "112": 0.05}, "windowed": {"56": 0.01, "112": 0.02}}}}
_CELL = {"acc": 0.5, "ci95": 0.1, "n_used": 100}
SURGICAL = {"n_target": 100, "shifts": {s: {"n": {"100": {"block1": _CELL, "head": {**_CELL, "acc": 0.3}},
                                                  "1000": {"block1": {**_CELL, "n_used": 1000}}}}
                                        for s in ("contrast:5", "labels")}}
_MT = {"mean": 40.0, "mean_std": 1.0, "few": 30.0, "few_std": 2.0, "many": 45.0, "many_std": 1.0}
MANYTASK = {"tasks": ["a", "b"], "few_tasks": ["b"],
            "methods": {"independent": _MT, "1-fc": {**_MT, "cosine": 0.05, "cosine_std": 0.01, "negative": 0.4}},
            "relation": {"layers": ["fc1", "fc2"], "correlation": [[[[1.0, 0.1], [0.1, 1.0]]] * 2]}}
_H = {"curve_step": [0, 50], "curve_error": [75.0, 50.0]}
SIMCLR = {"background": "small1", "rows": ["pixels", "simclr"], "protonet_small1_reference": 16.75,
          "published": {"deep convnet (full)": 13.5}, "history": {"simclr": _H},
          "oneshot20": {"pixels": {"error": 76.5}, "random": {"error": 73.5}, "simclr": {"error": 48.0}},
          "episodic": {r: {"5-way 1-shot": {"accuracy": a, "ci95": 0.01}}
                       for r, a in (("pixels", 0.4), ("simclr", 0.8))}}

_EV = [{"step": s, "val_accuracy": a, "accuracy": a, "valid_rate": 1.0,
        "failures": {"n_wrong": 10 - s, "uninformative_share": 0.1, "top20_share": 0.2}}
       for s, a in ((0, 0.1), (2, 0.9))]
_RUN = {"prompt_len": 2, "P": 2, "init": "vocab", "loss": [2.0, 1.0], "eval": _EV, "val_accuracy": 0.9,
        "steps_per_epoch": 1, "accuracy": 0.5, "train": {"accuracy": 0.9}}
_Z = {"mean": 0.4, "ci95": 0.05}
ZSL = {"chance_zsl": 0.067, "summary": {k: {m: {"zsl": _Z, "gzsl_h": _Z} for m in ("cosine", "full")}
                                        for k in ("names", "descriptions")}}
SOFT = {"n_val": 10, "soft": _RUN, "peft": _RUN, "hard": {"0": {"val_accuracy": 0.05}, "4": {"val_accuracy": 0.8}},
        "variants": {"2:vocab": _RUN}, "finetune": {"8": {"full": _RUN, "soft": _RUN}},
        "no_prompt": {"accuracy": 0.0, "given_reasoning_accuracy": 0.7},
        "masks": {"answer": {**_RUN, "given_reasoning_accuracy": 0.9}}}

DRAW = {
    "block_heatmap": lambda: viz.block_heatmap_figure(SURGICAL),
    "data_curve": lambda: viz.data_curve_figure(SURGICAL),
    "curves": lambda: viz.curves_figure(FOURIER, n_inner=2, d=3, meta_steps=5, x="uniform"),
    "weights": lambda: viz.weights_figure(FOURIER),
    "example": lambda: viz.example_figure(FOURIER),
    "lr_comparison": lambda: viz.lr_comparison_figure({"runs": {"0.1": FOURIER}, "support": [1, 2]}, n_inner=2),
    "pareto": lambda: viz.pareto_figure(MTL),
    "conflict": lambda: viz.conflict_figure(MTL, steps=[0, 10, 20]),
    "cka": lambda: viz.cka_figure(MTL),
    "toy": lambda: viz.toy_figure(TOY, "caption"),
    "many_task": lambda: viz.many_task_figure(MANYTASK),
    "task_correlation": lambda: viz.task_correlation_figure(MANYTASK),
    "error_vs_time": lambda: viz.error_vs_time_figure(OMNIGLOT),
    "oneshot20": lambda: viz.oneshot20_figure(OMNIGLOT),
    "episodic": lambda: viz.episodic_figure(OMNIGLOT),
    "caption_training": lambda: viz.caption_training_figure(CAPTION),
    "caption_attention": lambda: viz.caption_attention_figure(CAPTION["decoders"]["joint"]["example"], grid=2,
                                                              title="joint"),
    "vit_accuracy": lambda: viz.vit_accuracy_figure(VIT),
    "vit_cost": lambda: viz.vit_cost_figure(VIT),
    "simclr_curve": lambda: viz.simclr_curve_figure(SIMCLR),
    "simclr_accuracy": lambda: viz.simclr_accuracy_figure(SIMCLR),
    "training": lambda: viz.training_figure(SOFT),
    "hard_vs_soft": lambda: viz.hard_vs_soft_figure(SOFT),
    "failure": lambda: viz.failure_figure(SOFT),
    "qa_curve": lambda: viz.qa_curve_figure({**SOFT, "hard": {"accuracy": 0.2, "valid_rate": 0.0}}),
    "qa_finetune": lambda: viz.qa_finetune_figure(SOFT),
    "cot": lambda: viz.cot_figure(SOFT),
    "zsl_methods": lambda: viz.zsl_methods_figure(ZSL, ["cosine", "full"]),
    "layer_supervision": lambda: viz.layer_supervision_figure(TAGGING),
}


def test_every_viz_function_is_drawn_here():
    assert {f"{k}_figure" for k in DRAW} == set(viz.__all__)


@pytest.mark.parametrize("name", sorted(DRAW))
def test_figure_is_returned_not_written(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = DRAW[name]()
    assert isinstance(fig, Figure) and fig.axes
    assert os.listdir(tmp_path) == []  # drawing writes nothing
    save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_episodic_figure_is_none_without_episodes():
    empty = {**OMNIGLOT, "backgrounds": {"small1": {**OMNIGLOT["backgrounds"]["small1"], "episodic": {}}}}
    assert viz.episodic_figure(empty) is None
