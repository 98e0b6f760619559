"""customcode."""
