"""Formats and models both ends of the wire share (board protocol, SMU timing).

Layer labctl.wire: imports only labctl.core.
"""
