"""Classical fusion baselines (DWT, LPT, DTCWT, NSCT, NSST, PCNN) behind one registry; loaded lazily."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["nsct", "nsst", "pcnn", "registry", "selection", "wavelets"],
    submod_attrs={
        "registry": ["BASELINES", "WAVELET_BASELINES", "get_baseline"],
        "wavelets": ["fuse_dwt", "fuse_lpt", "fuse_dtcwt"],
        "nsct": ["fuse_nsct"],
        "nsst": ["fuse_nsst"],
        "pcnn": ["fuse_pcnn"],
    },
)
