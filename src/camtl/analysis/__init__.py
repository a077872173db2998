"""Analyses of trained runs (`camtl analyze ...`)."""
