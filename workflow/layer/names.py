"""The one vocabulary of the study: layer, modality and feature names and label-map values.

Every table, config key, figure and command line uses exactly these words, so they live in one place.
"""

from __future__ import annotations

#: Tissue layers from the skin inward. Label-map value of a layer = its index here + 1; 0 is background
#: (coupling gel above the skin, and anything below the muscle such as bone shadow).
LAYERS: tuple[str, ...] = ("dermis", "superficial_fat", "sfm", "deep_fat", "dfm", "muscle")
BACKGROUND: int = 0
LABEL_VALUES: dict[str, int] = {name: i + 1 for i, name in enumerate(LAYERS)}
N_LAYERS: int = len(LAYERS)

#: Input modalities of a model. ``fused`` stacks B-mode and SWE as two channels (in that order).
MODALITIES: tuple[str, ...] = ("bmode", "swe", "fused")
CHANNELS: dict[str, tuple[str, ...]] = {"bmode": ("bmode",), "swe": ("swe",), "fused": ("bmode", "swe")}
#: The modalities the LAYER paper's two headline questions read: the B-mode model (does the DFM rank
#: first?) and the fused model (does non-muscle about equal muscle?). A paper-check cohort trains only these.
PAPER_MODALITIES: tuple[str, ...] = ("bmode", "fused")

#: Per-layer features a planted effect can act on.
FEATURES: tuple[str, ...] = ("thickness", "echogenicity", "texture", "stiffness")
#: Features that can show in each modality's input: B-mode grey levels carry thickness, echogenicity and
#: texture; the SWE map carries stiffness; the fused model both.
VISIBLE_FEATURES: dict[str, tuple[str, ...]] = {
    "bmode": ("thickness", "echogenicity", "texture"),
    "swe": ("stiffness",),
    "fused": FEATURES,
}

#: Columns every cohort sheet must have; paths are relative to the sheet's directory.
SHEET_COLUMNS: tuple[str, ...] = ("scan_id", "subject_id", "label", "bmode", "swe", "layers")
