"""Hyperparameter spaces and dataset rules, one JSON file per dataset (installed as ``aiperf.search_spaces``)."""
