"""Checks of the attribution methods: sanity (parameter randomisation), faithfulness, robustness.

Import-free: modules are imported by their full name.
"""
