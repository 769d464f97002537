"""The report's figures, one module per figure family.

Import-free: modules are imported by their full name.
"""
