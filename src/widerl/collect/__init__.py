"""Where transitions come from: envs, the env loop, the inline and Ray sources, and the
intake into the replay."""
