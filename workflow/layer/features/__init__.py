"""Per-layer image measurements (the classical biomarker baseline) and the image-level oracle built on them."""
