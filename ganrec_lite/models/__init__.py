"""Recommender models, one readable module per model."""
