"""The run folder: its names, lock and config (folder.py), checkpoints, the metrics
logger and plots."""
