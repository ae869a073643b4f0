"""widerl: training larger networks for off-policy deep RL (Ota, Jha & Kanezaki 2021)."""

__version__ = "0.1.0"
