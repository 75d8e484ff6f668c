"""Bayesian model selection: LOO/WAIC, K-fold, stacking, model evidence and Bayes factors."""
