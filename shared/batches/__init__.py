"""Batches: many jobs submitted as one, under one aggregate hold."""
