"""The networks: MONAI models, the data path, training, and the device.

Import-free: modules are imported by their full name.
"""
