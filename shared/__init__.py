"""Vision-language analysis on Azure Functions: the package every function shares."""

__version__ = "0.1.0"
