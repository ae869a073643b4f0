"""A training run: the composition root (build.py), the trainer, the learning step
(step.py), evaluation, signals, divergence and the checks before a run starts."""
