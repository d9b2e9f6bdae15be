"""Control and energy-optimization loops (see issue: chiller-plant control)."""
