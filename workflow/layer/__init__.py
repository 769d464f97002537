"""LAYER: which tissue layers of 3-D lumbar ultrasound drive the prediction of myofascial low back pain.

The package holds every piece of logic of the workflow (synthetic cohort, cohort validation, splits,
training, attribution, aggregation, statistics, figures); the Snakemake scripts only call it.
"""

__version__ = "0.1.0"
