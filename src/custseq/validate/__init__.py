"""Validation: parse user tables into typed frames, apply declarative rules, quarantine bad rows."""
