"""Synthetic 3-D lumbar ultrasound cohort with planted, documented pain effects (docs/synthetic-cohort.md).

Public API used by the workflow and the ``layer synth`` command line.
"""

from layer.synth.cohort import finalize_cohort, synthesize_chunk, synthesize_cohort
from layer.synth.config import Effect, SynthConfig, SynthConfigError, load_model, planted_effects
from layer.synth.preview import render_preview
from layer.synth.render import RenderedScan, render_scan, time_scan
from layer.synth.truth import draw_design, draw_features, marginal_d, recovered_d

__all__ = [
    "Effect",
    "RenderedScan",
    "SynthConfig",
    "SynthConfigError",
    "draw_design",
    "draw_features",
    "finalize_cohort",
    "load_model",
    "marginal_d",
    "planted_effects",
    "recovered_d",
    "render_preview",
    "render_scan",
    "synthesize_chunk",
    "synthesize_cohort",
    "time_scan",
]
