"""mfkeras: CNN-based multi-focus image fusion with Keras."""

__version__ = "0.1.0"
