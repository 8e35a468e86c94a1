"""Amaranth hardware of the event-driven BSNN core (see docs/architecture.md).

``bsnn.hdl.core.BSNNCore`` is the top level; ``bsnn.hdl.generate.generate`` writes its Verilog, memory
images and hardware manifest; ``bsnn.hdl.generate.config_writes`` loads a bundle into a build.
"""
