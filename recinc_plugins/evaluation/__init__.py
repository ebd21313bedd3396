"""Evaluation harness: replay streams through models under one prequential protocol."""
