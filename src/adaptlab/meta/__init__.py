"""Outer loops: feature-weight meta-learning, MAML and its variants, Prototypical Networks, baselines."""

from adaptlab._lazy import attach

__all__, __getattr__, __dir__ = attach(__name__, {
    "baselines": ["embed_episodes", "logistic_head_logits", "nearest_neighbour_logits", "pretrain_classifier"],
    "feature_weights": ["FeatureWeights", "closed_form_inner", "feature_weight_meta_loss", "squared_error"],
    "maml": ["MAML", "adapt_tasks", "choose_path", "inner_adapt", "inner_loop", "maml_meta_loss", "mean_buffers",
             "module_forward", "per_task_buffers", "split_params"],
    "protonet": ["ProtoNet", "embed_all", "episode_loss", "proto_logits", "protonet_loss"],
})
