"""Reports and figures over results tables, Pareto fronts, SI-prefixed units."""
