"""Integrations of crucial with other libraries (joblib)."""
