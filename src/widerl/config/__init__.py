"""Every setting of a run: the fields, presets and validation (torch-free, so that
`widerl --help` stays fast)."""
