"""The paper's experiments: which runs make each figure, running them, and reporting them."""
