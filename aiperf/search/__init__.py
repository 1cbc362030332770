"""Search: network-morphism Bayesian optimisation, TPE hyperparameters, epoch schedule, reward prediction."""
