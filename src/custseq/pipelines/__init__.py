"""The only place that chains stages: prepare, pretrain, predict, score, embed, evaluate, plan and report."""
