"""The paper's analysis tools: effective rank of the critics' features (A.4), loss
landscapes of the critics' TD loss (A.3, Fig. 1b, 3b, 14) and Table 2's parameter counts.

    srank.py             srank, critic_srank (the trainer's rows: run/probes.py)
    landscape.py         loss_surface, filter_normalized_direction (any model, any loss)
    critic_landscape.py  the critics' TD loss with fixed targets (A.3, Eq. 2-3)
    run.py               a finished run folder: agent and stored transitions
    landscape_plot.py    landscape.csv and the contour / surface figures
    summary.py           Table 2's per-layer parameter tables (`widerl summary`)

`widerl landscape` is cli/landscape.py. Nothing is re-exported here: the command line imports
this package's modules only when a command runs, so `widerl --help` stays free of torch.
"""
