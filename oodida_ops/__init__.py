"""oodida_ops."""
