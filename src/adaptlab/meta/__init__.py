"""Outer loops: feature-weight meta-learning, MAML and its variants, Prototypical Networks, baselines."""
