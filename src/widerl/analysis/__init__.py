"""The paper's analysis tools: effective rank of the critics' features (A.4) and loss
landscapes of the critics' TD loss (A.3, Fig. 1b, 3b, 14).

    srank.py             srank, critic_srank (trainer: `from widerl.analysis.srank import ...`)
    landscape.py         loss_surface, filter_normalized_direction (any model, any loss)
    critic_landscape.py  the critics' TD loss with fixed targets (A.3, Eq. 2-3)
    run.py               a finished run folder: agent and stored transitions
    landscape_plot.py    landscape.csv and the contour / surface figures
    cli.py               `widerl landscape`

Nothing is re-exported here: `widerl --help` imports cli.py and must stay free of torch.
"""
