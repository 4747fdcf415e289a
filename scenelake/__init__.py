"""scenelake: Spark + Delta Lake + Trino lakehouse for evaluating people-understanding models.

Importing the package stays standard-library only: provision/setup.py uses it before the
virtual environment exists.
"""

__version__ = "0.1.0"
