"""Method-of-lines building blocks for PDE models on structured 1-D and 2-D grids."""
