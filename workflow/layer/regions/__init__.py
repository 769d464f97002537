"""Layer maps as regions: the attribution regions (membranes grown by a partial-volume margin) and the
interface geometry of a label map (moved interfaces for the robustness check). Torch-free core: imports no check.

Import-free: modules are imported by their full name.
"""
