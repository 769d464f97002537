"""The cohort: the sheet and every volume checked before anything trains, and the subject-level folds.

Import-free: modules are imported by their full name.
"""
