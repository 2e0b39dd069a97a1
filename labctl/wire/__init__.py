"""Formats both ends of a wire share: the board's framed binary protocol and the SMUs'
on-time model, used by the drivers and by the virtual instruments alike."""
