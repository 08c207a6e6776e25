# The cffi binding to MIT libkrb5 is compiled at install time (API mode); setuptools only
# takes cffi_modules from setup(), hence this file. Everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["kink/krb5/_build.py:ffibuilder"])
