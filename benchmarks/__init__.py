"""Side-by-side measurements against the official agent, printed as ratios (`make bench`)."""
