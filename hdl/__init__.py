"""Amaranth hardware of the event-driven BSNN core (see docs/architecture.md).

``hdl.core.BSNNCore`` is the top level; ``hdl.generate.generate`` writes its Verilog, memory
images and hardware manifest; ``hdl.generate.config_writes`` loads a bundle into a build.
"""
