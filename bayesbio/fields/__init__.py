"""Function-space priors and field inference for ill-posed inverse problems."""
