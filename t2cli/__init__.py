"""t2: self-adaptive LLMs (Transformer²) as a command-line toolkit."""

__version__ = "0.1.0"
