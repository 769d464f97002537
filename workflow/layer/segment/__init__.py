"""Layer maps for scans that have none: a 3-D segmentation trained on the drawn maps, anatomy-keeping
post-processing, its quality on held-out drawn maps, and the sheet that says where each map came from."""
