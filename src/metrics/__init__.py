"""Evaluation metrics shared by the models."""
