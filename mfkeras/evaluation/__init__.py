"""Evaluation: fusion metrics, datasets on disk, the methods x pairs run, reports and figures,
and ground truth: generated multi-focus pairs and stacks, and metrics against it."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["agreement", "figures", "groundtruth", "metrics", "pairs", "reference", "report", "runner"],
    submod_attrs={
        "pairs": ["IMAGE_EXTENSIONS", "Pair", "find_pairs", "find_precomputed"],
        "runner": ["Method", "evaluate", "jpeg_roundtrip", "resolve_method"],
        "report": ["markdown_table", "rank", "read_rows_csv", "rows_csv", "summarise", "summary_markdown"],
        "figures": ["figure_png", "gallery_png", "png_bytes", "save_maps"],
        "groundtruth": [
            "DefocusConfig", "Sample", "make_sample", "is_development_image", "development_images",
            "development_sample",
        ],
        "reference": ["psnr", "ssim", "boundary_band", "boundary_band_psnr", "truth_scores"],
        "agreement": ["concordance", "block_aligned", "agreement_summary", "finite_mean"],
    },
)
