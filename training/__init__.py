"""Training of binary spiking networks whose forward pass is the core's integer arithmetic.

Modules: ``data`` (dataset loaders; encodings are ``bsnn.firmware_export.encoding``), ``model``
(binary-weight BSNN, hardware mode == golden model), ``agmm`` (adaptive gradient modulation),
``diagnostics`` (sign-flip and firing rates), ``train`` (``bsnn train``), ``export``
(checkpoint -> bundle), ``ablation`` (run comparison). See docs/training.md.
"""
