"""Attribution: one module per method family on a shared dispatch, and the one registry of method names.

Kept import-free so that the Snakemake process can read :mod:`layer.explain.registry` without torch.
"""
