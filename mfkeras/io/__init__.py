"""Reading and writing images, pixel conversions and input checks; loaded lazily (no TensorFlow)."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["color", "config_json", "images", "metadata", "raw", "stderr", "validate"],
    submod_attrs={
        "images": [
            "IMAGE_EXTENSIONS",
            "ImageError",
            "check_output_dtype",
            "check_output_path",
            "encode_image",
            "expand_inputs",
            "list_images",
            "natural_key",
            "read_image",
            "read_images",
            "write_bytes_atomic",
            "write_image",
        ],
        "color": ["GRAY_WEIGHTS", "to_gray", "to_unit_range"],
        "validate": ["MIN_SIDE", "validate_images"],
        "config_json": ["JsonConfig"],
        "metadata": ["Metadata", "MetadataWarning", "embed_metadata", "icc_mismatch", "read_metadata"],
        "raw": ["RAW_EXTENSIONS", "is_raw_path", "read_raw"],
    },
)
