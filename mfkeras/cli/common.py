"""What every command-line script shares: one-line errors with exit status 2."""

import contextlib
import json
import os
import sys
import time

from mfkeras.io.validate import validate_images

USAGE_EXIT_STATUS = 2
# The choices come from mfkeras.fusion.options, which imports no TensorFlow: flags are checked first.
from mfkeras.fusion.options import (  # noqa: E402
    ALIGN_METHODS,
    ALIGN_MODELS,
    BACKENDS,
    CONSISTENCY_MODES,
    INFERENCE_DTYPES,
    KERAS_ONLY_OPTIONS,
    QUANTIZATIONS,
    REFINE_MODES,
    STACK_METHODS,
    STACK_SCORINGS,
)


def parse_flags(argv):
    """absl flag parsing with one-line errors and exit status 2 (absl itself exits with 1)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        program = argv[0].rsplit("/", 1)[-1] if argv else "mfkeras"
        print(f"{program}: error: {error}", file=sys.stderr)
        print("Pass --helpfull to see the flags.", file=sys.stderr)
        sys.exit(USAGE_EXIT_STATUS)


HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def run_main(main) -> None:
    """``absl.app.run(main)`` with :func:`parse_flags`: every script exits 2 on bad flags,
    and 0 after printing the help it was asked for (absl itself exits 1)."""
    from absl import app

    try:
        app.run(main, flags_parser=parse_flags)
    except SystemExit as stop:
        if stop.code == 1 and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
            sys.exit(0)
        raise


@contextlib.contextmanager
def clean_errors(program: str):
    """Turns input errors into one line on stderr and exit status 2 (no traceback), and
    warnings into one line each (``program: warning: ...``)."""
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"{program}: warning: {as_flags(str(message))}", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = one_line
    try:
        yield
    except (ValueError, OSError) as error:
        print(f"{program}: error: {as_flags(str(error))}", file=sys.stderr)
        sys.exit(USAGE_EXIT_STATUS)
    finally:
        warnings.showwarning = previous


# Library messages name parameters; on the command line they read as the flags that set them.
PARAMETER_FLAGS = {
    "pass overwrite=True": "pass --overwrite",
    "raise max_pixels to read it": "raise --max_megapixels to read it",
    "try method='ecc'": "try --align_method=ecc",
    "pass the path of a .keras file as spec": "pass a .keras file with --model",
    "load the authors' released weights with load_liu2017_mat(path)":
        "use the authors' released weights with --liu_mat path/to/cnnmodel.mat",
    "Point data_dir at": "Point --data_dir at",
    "with image_dir.": "with --image_dir.",
}


def as_flags(message: str) -> str:
    """Rewrites the parameter names in a library message as command-line flags."""
    for parameter, flag in PARAMETER_FLAGS.items():
        message = message.replace(parameter, flag)
    return message




def check_same_kind(sources, paths) -> None:
    """Rejects inputs that are too small, differ in size or mix gray and colour, naming the files."""
    validate_images(sources, names=[str(path) for path in paths])


def median_seconds(function, repeats: int) -> float:
    """Median wall time of ``function()`` over ``repeats`` runs after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def define_fusion_flags(flags) -> None:
    """Defines the flags shared by every script that fuses: model choice and FusionOptions."""
    flags.DEFINE_string("model", None, "Shipped model name or .keras file (default: the shipped default).")
    flags.DEFINE_string("liu_mat", None, "Use the authors' released weights (cnnmodel.mat) instead.")
    flags.DEFINE_enum("refine", "guided", list(REFINE_MODES), "Decision-map refinement.")
    flags.DEFINE_enum(
        "consistency", "remove_small", list(CONSISTENCY_MODES), "Consistency verification."
    )
    flags.DEFINE_float(
        "area_ratio", None, "Small-region threshold as a fraction of the image area (default: the model's own)."
    )
    flags.DEFINE_integer("guided_radius", None, "Guided-filter radius (default: the model's own).")
    flags.DEFINE_float("guided_eps", None, "Guided-filter regularisation (default: the model's own).")
    flags.DEFINE_integer(
        "soft_band", None,
        "Use the network's probability within this many pixels of the decision boundary (pairs and "
        "knockout stacks; after any --refine); 0: the refined decision everywhere (default: the model's own).",
    )
    flags.DEFINE_bool(
        "halo_removal", None,
        "Clean each source near focus boundaries of the other sources' defocused spill before "
        "blending (default: the model's own: on for per-pixel decision networks).",
    )
    flags.DEFINE_enum(
        "stack_scoring", None, list(STACK_SCORINGS),
        "Joint stacks: every frame against every other (all_pairs) or each against the sharpest "
        "so far (knockout, 2(N-1) comparisons) (default: the model's own).",
    )
    flags.DEFINE_bool("symmetric", False, "Average s(A,B) and 1-s(B,A) (exactly antisymmetric, 2x work).")
    flags.DEFINE_bool("dense", False, "Stride-1 ('a trous') score map instead of the strided one.")
    flags.DEFINE_enum(
        "inference_dtype", "float32", list(INFERENCE_DTYPES),
        "Network precision: float16 / bfloat16 mixed precision (GPUs; bfloat16 also CPUs with AMX), "
        "float64 a slow reference. TensorFlow uses a GPU when it sees one.",
    )
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the network (one compilation per image size).")


def fusion_option_kwargs(flag_values) -> dict:
    """The FusionOptions arguments that :func:`define_fusion_flags` set."""
    return {
        "symmetric": flag_values.symmetric,
        "dense": flag_values.dense,
        "consistency": flag_values.consistency,
        "area_ratio": flag_values.area_ratio,
        "refine": flag_values.refine,
        "guided_radius": flag_values.guided_radius,
        "guided_eps": flag_values.guided_eps,
        "soft_band": flag_values.soft_band,
        "halo_removal": flag_values.halo_removal,
        "stack_scoring": flag_values.stack_scoring,
        "inference_dtype": flag_values.inference_dtype,
        "jit_compile": flag_values.jit_compile,
    }


def write_json(path, payload: dict) -> None:
    """Writes ``payload`` as JSON, creating the folder; atomic, so a failed run leaves no half file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    from mfkeras.io.images import write_bytes_atomic

    write_bytes_atomic(path, (json.dumps(payload, indent=2) + "\n").encode())
