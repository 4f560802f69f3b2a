"""Geometry of LiDAR (or back-projected depth) points: the ground, the objects' clusters and
the L-shape fit of their outlines. Plain functions of arrays; the initialisation
(:mod:`autolabel.init`) sets their parameters."""
