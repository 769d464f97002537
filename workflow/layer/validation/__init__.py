"""The ground-truth recovery study: layer calls scored against the planted truth.

Import-free: modules are imported by their full name.
"""
