"""Spending limits per account or per API key, per day or per month."""
