"""The replay buffer (buffer.py): storage that keeps each observation once, uniform and
prioritized samplers, the sum tree, the device's random generators."""
