"""Plots and drawn images of training runs and studies: a leaf that imports nothing of
jaxvision (numpy, matplotlib's Figure API and PIL only), so every layer may use it."""
