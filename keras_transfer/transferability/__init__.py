"""Transferability scores, backbone ranking, transfer reports, domain distance."""
