"""Statistics: subject-level bootstrap intervals, the layer tables, and the null-calibrated layer calls.

Import-free: modules are imported by their full name.
"""
