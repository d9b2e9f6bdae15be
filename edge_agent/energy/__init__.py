"""Energy accounting: the energy model in config, interval energy from the meters'
cumulative registers, virtual meters and the balance of the meter tree, standard coal
equivalent (docs/energy-accounting.md)."""
