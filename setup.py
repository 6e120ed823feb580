"""For tools that look for a setup.py: the project's metadata and dependencies are in pyproject.toml, which
`pip install -e .` reads; this file adds nothing to it."""
from setuptools import setup

setup()
