"""Batch fusion of many stacks: finding them, fusing each one, reporting; loaded lazily.

``stacks`` finds the stacks of a batch folder or a manifest (no TensorFlow);
``runner`` fuses them in one process with the model loaded once, resumably;
``beam`` runs the same job as an Apache Beam pipeline (needs the ``beam`` extra).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["beam", "runner", "stacks"],
    submod_attrs={
        "stacks": ["Stack", "find_stacks", "parse_manifest_line", "output_path"],
        "runner": ["fuse_batch", "fuse_stack_files", "REPORT_FILE"],
    },
)
