"""Probing (papers 000, 001): layer-wise and neuron-level analysis of trained encoders."""
