"""Everything `widerl bench` runs, out of the core: update throughput against peers
(update.py, peers.py), stacked seeds and distributed collection."""
