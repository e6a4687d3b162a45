"""Fuses two or more registered multi-focus images (console script `mfkeras-fuse`).

Example:
  mfkeras-fuse a.jpg b.jpg -o fused.png
  mfkeras-fuse --inputs a.jpg,b.jpg --output fused.png --save_maps maps/ --plot fig3.png
  mfkeras-fuse 'stack/*.jpg' -o fused.tif          # glob or folder, natural order
  mfkeras-fuse --batch_dir stacks/ --output_dir fused/   # every subfolder is one stack
  mfkeras-fuse --demo
"""

import os
import sys

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mfkeras.cli import common as cli  # noqa: E402

from mfkeras.fusion.timing import StageTimes  # noqa: E402  (no TensorFlow)
from mfkeras.network import zoo as _zoo  # noqa: E402  (no TensorFlow)

DEMO_INPUTS = [str(path) for path in _zoo.demo_pair()]
DEMO_OUTPUT_DIR = "demo_output"

flags.DEFINE_list(
    "inputs", None, "Input images (paths, folders or glob patterns), comma-separated; or give them "
    "as arguments.",
)
flags.DEFINE_string("output", None, "Fused image to write (.png, .jpg, .tif, .bmp).", short_name="o")
flags.DEFINE_string("batch_dir", None, "Batch mode: every subfolder here with 2+ images is one stack.")
flags.DEFINE_string("output_dir", None, "Batch mode: where <subfolder>.<output_ext> files go.")
flags.DEFINE_string("output_ext", "png", "Batch mode: the output file type (png, jpg, tif, bmp).")
cli.define_fusion_flags(flags)
flags.DEFINE_enum(
    "stack_method", "joint", list(cli.STACK_METHODS),
    "Three or more inputs: joint O(N) scoring with one label map, or pairwise in sequence.",
)
flags.DEFINE_bool("align", False, "Register every frame to a reference frame first (handheld stacks).")
flags.DEFINE_enum("align_model", "affine", list(cli.ALIGN_MODELS), "Motion model for --align.")
flags.DEFINE_enum("align_method", "ecc", list(cli.ALIGN_METHODS), "ECC (sub-pixel) or ORB features + RANSAC.")
flags.DEFINE_integer("reference_frame", None, "Reference frame index for --align (default: the middle one).")
flags.DEFINE_string("save_alignment", None, "With --align: save the registration (JSON) to reuse on the rig's next stacks.")
flags.DEFINE_string("load_alignment", None, "Align with a registration saved by --save_alignment instead of estimating.")
flags.DEFINE_string("align_only", None, "Write the aligned frames into this folder (PNG) and stop; no fusion.")
flags.DEFINE_float("memory_budget_mb", 2048, "Score in tiles sized so the network fits this budget.")
flags.DEFINE_integer("max_tile_side", None, "Score in tiles of at most this many pixels a side.")
flags.DEFINE_string("save_maps", None, "Directory to write the score, focus and decision maps into.")
flags.DEFINE_string("plot", None, "PNG file for the figure of decision maps and fused images.")
flags.DEFINE_bool("overwrite", False, "Replace existing output files.")
flags.DEFINE_bool(
    "strip_metadata", False, "Leave the reference frame's EXIF, ICC profile and XMP out of the output."
)
flags.DEFINE_enum(
    "backend", "auto", ["auto", *cli.BACKENDS],
    "Who runs the network: litert (the shipped models' .tflite files, no TensorFlow import), keras "
    "(any model, --dense, --inference_dtype, --jit_compile, GPUs), or auto (litert where it can).",
)
flags.DEFINE_enum(
    "litert_quantization", "float32", ["float32", "dynamic_int8"],
    "LiteRT backend: the float32 files (parity with Keras to 3e-6) or the dynamic-range int8 ones "
    "(about 2.5x faster on CPUs; decisions agree >= 99.9 %).",
)
flags.DEFINE_bool("timings", False, "Print the seconds of each stage (decode, score, ..., encode).")
flags.DEFINE_float(
    "max_megapixels", 250, "Refuse frames larger than this (read from the header, before decoding)."
)
flags.DEFINE_bool("verbose", False, "Let TensorFlow's and LiteRT's own log lines through to stderr.")
flags.DEFINE_bool("quiet", False, "Print nothing but errors: no summary line, no progress bar.")
flags.DEFINE_bool(
    "demo", False, f"Fuse the bundled demo pair into ./{DEMO_OUTPUT_DIR}/ (image, maps, figure)."
)

FLAGS = flags.FLAGS


def main(argv):
    with cli.clean_errors("mfkeras-fuse"):
        if FLAGS.batch_dir is not None or FLAGS.output_dir is not None:
            if argv[1:] or FLAGS.inputs or FLAGS.output or FLAGS.demo:
                raise ValueError(
                    "Batch mode (--batch_dir, --output_dir) takes no input images, --output or --demo."
                )
            return run_batch()
        fuse_one(argv[1:])
    return 0


def choose_backend() -> str:
    """The backend the flags ask for: ``keras`` or ``litert`` (before anything is loaded)."""
    from mfkeras.network import zoo

    needs_keras = [name for name, value in cli.KERAS_ONLY_OPTIONS.items() if FLAGS[name].value != value]
    bundle = None if FLAGS.liu_mat else zoo.litert_dir(FLAGS.model, quantization=FLAGS.litert_quantization)
    if FLAGS.backend == "litert" or FLAGS["litert_quantization"].present:
        if FLAGS.backend == "keras":
            raise ValueError("--litert_quantization is for the LiteRT backend: leave out --backend=keras.")
        if needs_keras:
            raise ValueError(f"--backend=litert runs the strided float32 network: leave out --{needs_keras[0]}.")
        if bundle is None:
            zoo.load_litert_network(FLAGS.model, quantization=FLAGS.litert_quantization)  # raises, naming it
        return "litert"
    if FLAGS.backend == "keras" or needs_keras or bundle is None:
        return "keras"
    return "litert"


def load_model(backend: str):
    """The shipped model, .keras file or released weights, for ``backend``.

    Without --verbose, TensorFlow's start-up log lines (oneDNN, CUDA probing) are kept
    off stderr: the import and the device scan happen here, inside the silenced block.
    """
    from mfkeras.io.stderr import native_stderr_silenced
    from mfkeras.network import zoo

    if backend == "litert":
        return zoo.load_litert_network(
            FLAGS.model, quiet=not FLAGS.verbose, quantization=FLAGS.litert_quantization
        )
    with native_stderr_silenced(not FLAGS.verbose):
        import tensorflow as tf

        tf.config.list_physical_devices()
        return zoo.load_patch_model(zoo.resolve_model_path(FLAGS.liu_mat or FLAGS.model))


def max_pixels() -> int:
    """--max_megapixels in pixels."""
    if FLAGS.max_megapixels <= 0:
        raise ValueError(f"--max_megapixels must be positive. Received: {FLAGS.max_megapixels}")
    return int(FLAGS.max_megapixels * 1e6)


def progress_bar():
    """A tqdm bar on stderr for loops that take over a second, when stderr is a terminal."""
    if FLAGS.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return lambda iterable, description: tqdm(
        iterable, desc=description, delay=1.0, leave=False, file=sys.stderr
    )


def reference_metadata(paths):
    """The metadata the output carries: the reference frame's (None with --strip_metadata).

    The reference is --reference_frame, else the middle frame when aligning, else the first.
    Frames whose ICC profile differs from the reference's are named in a warning.
    """
    if FLAGS.strip_metadata:
        return None
    import warnings

    from mfkeras.io import metadata

    aligning = FLAGS.align or FLAGS.load_alignment
    reference = FLAGS.reference_frame if FLAGS.reference_frame is not None else (
        len(paths) // 2 if aligning else 0
    )
    found = [metadata.read_metadata(path) for path in paths]
    if 0 <= reference < len(paths):
        other = metadata.icc_mismatch(paths, found, reference)
        if other:
            warnings.warn(
                f"{', '.join(other)} carry an ICC profile other than {paths[reference]}'s; "
                f"the fused image is tagged with {paths[reference]}'s."
            )
        return found[reference]
    return None


def say(message: str) -> None:
    """Prints a progress or summary line unless --quiet."""
    if not FLAGS.quiet:
        print(message)


def fusion_options():
    """The FusionOptions that the flags set."""
    from mfkeras import fusion

    return fusion.FusionOptions(
        **cli.fusion_option_kwargs(FLAGS),
        stack_method=FLAGS.stack_method,
        max_tile_side=FLAGS.max_tile_side,
        memory_budget_mb=FLAGS.memory_budget_mb,
    )


def alignment_step(report=print):
    """The registration step on decoded frames (--align, --load_alignment), or None."""
    if not (FLAGS.align or FLAGS.load_alignment or FLAGS.align_only):
        return None

    def register(sources):
        from mfkeras.fusion import align
        from mfkeras.io import images

        if FLAGS.load_alignment:
            with open(FLAGS.load_alignment) as saved:
                warps, reference = align.alignment_from_json(saved.read(), len(sources), sources[0].shape)
            alignment = align.apply_warps(sources, warps, reference)
        else:
            alignment = align.align_images(
                sources, FLAGS.reference_frame, motion=FLAGS.align_model, method=FLAGS.align_method,
                progress=progress_bar(),
            )
        if FLAGS.save_alignment:
            payload = align.alignment_to_json(alignment, sources[0].shape).encode()
            images.write_bytes_atomic(FLAGS.save_alignment, payload)
        top, bottom, left, right = alignment.crop
        report(f"Aligned {len(sources)} frames to frame {alignment.reference_index}; "
               f"kept rows {top}:{bottom}, columns {left}:{right}")
        return alignment.images

    return register


def check_alignment_flags(paths) -> None:
    """Checks the registration flags' files before anything is decoded."""
    from mfkeras.io import images

    if FLAGS.load_alignment and not os.path.isfile(FLAGS.load_alignment):
        raise images.ImageError(f"--load_alignment file not found: {FLAGS.load_alignment}")
    if FLAGS.load_alignment and FLAGS.save_alignment:
        raise ValueError("Pass --load_alignment or --save_alignment, not both.")
    if FLAGS.save_alignment:
        if not (FLAGS.align or FLAGS.align_only):
            raise ValueError("--save_alignment saves what --align (or --align_only) estimates: add --align.")
        directory = os.path.dirname(os.path.abspath(FLAGS.save_alignment))
        if not os.path.isdir(directory):
            raise images.ImageError(f"--save_alignment directory does not exist: {directory}")
        if os.path.realpath(FLAGS.save_alignment) in {os.path.realpath(p) for p in paths}:
            raise images.ImageError(f"--save_alignment would overwrite an input: {FLAGS.save_alignment}")
    if FLAGS.align_only:
        if not os.path.isdir(FLAGS.align_only):
            raise images.ImageError(f"--align_only directory does not exist: {FLAGS.align_only}")
        for path in aligned_frame_paths(paths):
            images.check_output_path(path, paths, FLAGS.overwrite)


def aligned_frame_paths(paths) -> list:
    """Where --align_only writes each frame: ``<folder>/<input stem>.png``."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    if len(set(stems)) != len(stems):
        raise ValueError("--align_only names its outputs after the inputs, whose file stems repeat.")
    return [os.path.join(FLAGS.align_only, stem + ".png") for stem in stems]


def run_batch() -> int:
    """Batch mode: fuses every stack of --batch_dir into --output_dir; 1 if any stack failed."""
    from mfkeras.batch import runner, stacks
    from mfkeras.network import zoo

    if not FLAGS.batch_dir or not FLAGS.output_dir:
        raise ValueError("Batch mode needs both --batch_dir and --output_dir.")
    for flag in ("save_maps", "plot", "save_alignment", "align_only"):
        if FLAGS[flag].value:
            raise ValueError(f"--{flag} is not available in batch mode.")
    if FLAGS.load_alignment and not os.path.isfile(FLAGS.load_alignment):
        raise ValueError(f"--load_alignment file not found: {FLAGS.load_alignment}")
    found = stacks.find_stacks(FLAGS.batch_dir)
    stacks.output_path(FLAGS.output_dir, "check", FLAGS.output_ext)
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
        raise ValueError(f"--output_dir exists and is not a directory: {FLAGS.output_dir}")
    zoo.resolve_model_path(FLAGS.liu_mat or FLAGS.model)
    model = load_model(choose_backend())
    report = runner.fuse_batch(
        found, model, FLAGS.output_dir, fusion_options(), output_ext=FLAGS.output_ext,
        overwrite=FLAGS.overwrite, prepare=alignment_step(report=lambda line: None),
        progress=sys.stderr.isatty() and not FLAGS.quiet, max_pixels=max_pixels(),
        keep_metadata=not FLAGS.strip_metadata,
    )
    for failure in report["failures"]:
        print(f"  failed: {failure['stack']}: {failure['reason']}", file=sys.stderr)
    say(
        f"Batch: {report['fused']} fused, {report['skipped']} skipped (output exists), "
        f"{report['failed']} failed of {report['stacks']} stacks in {report['seconds']:.1f} s -> "
        f"{os.path.join(FLAGS.output_dir, runner.REPORT_FILE)}"
    )
    return 1 if report["failed"] else 0


def fuse_one(positional) -> None:
    """Fuses one stack: the images given as arguments or with --inputs, or the demo pair."""
    # Everything is checked before TensorFlow is imported: errors come fast and alone.
    from mfkeras.io import images
    from mfkeras.network import zoo

    if positional and FLAGS.inputs:
        raise ValueError("Give the images either as arguments or with --inputs, not both.")
    inputs, output, maps_dir, plot = FLAGS.inputs or positional, FLAGS.output, FLAGS.save_maps, FLAGS.plot
    overwrite = FLAGS.overwrite
    if FLAGS.demo:
        os.makedirs(DEMO_OUTPUT_DIR, exist_ok=True)
        inputs = inputs or DEMO_INPUTS
        output = output or os.path.join(DEMO_OUTPUT_DIR, "fused.png")
        maps_dir = maps_dir or DEMO_OUTPUT_DIR
        plot = plot or os.path.join(DEMO_OUTPUT_DIR, "figure.png")
        overwrite = True
    if not inputs:
        raise images.ImageError("Input images are required: mfkeras-fuse IMAGE IMAGE ... -o OUTPUT.")
    if not output and not FLAGS.align_only:
        raise images.ImageError("--output (-o) is required.")
    paths = images.expand_inputs(inputs)
    if len(paths) < 2:
        raise images.ImageError(f"Fusion needs at least two input images. Received {len(paths)}: {paths}")
    check_alignment_flags(paths)
    if FLAGS.align_only:
        return write_aligned_frames(paths)
    images.check_output_path(output, paths, overwrite)
    if plot:
        images.check_output_path(plot, paths, overwrite)
    if maps_dir and not os.path.isdir(maps_dir):
        raise images.ImageError(f"--save_maps directory does not exist: {maps_dir}")
    zoo.resolve_model_path(FLAGS.liu_mat or FLAGS.model)
    backend = choose_backend()
    times = StageTimes()
    with times.stage("decode"):
        sources = images.read_images(paths, max_pixels())
    cli.check_same_kind(sources, paths)
    images.check_output_dtype(output, sources[0].dtype)
    from mfkeras import fusion

    register = alignment_step(report=say)
    if register is not None:
        with times.stage("align"):
            sources = register(sources)
    with times.stage("load_model"):
        model = load_model(backend)
    result = fusion.fuse(sources, model, fusion_options(), times=times, progress=progress_bar())
    with times.stage("encode"):
        images.write_image(output, result.fused, reference_metadata(paths))
    label = backend if getattr(model, "quantization", "float32") == "float32" else f"{backend} {model.quantization}"
    say(f"Fused {len(paths)} images with {model.name} ({label}) -> {output}")
    if FLAGS.timings:
        print(times.summary(), file=sys.stderr)
    write_extras(result, sources, maps_dir, plot)


def write_aligned_frames(paths) -> None:
    """--align_only: registers the frames and writes them, cropped to their common area."""
    from mfkeras.io import images

    sources = images.read_images(paths, max_pixels())
    cli.check_same_kind(sources, paths)
    aligned = alignment_step(report=say)(sources)
    for path, frame in zip(aligned_frame_paths(paths), aligned):
        images.write_image(path, frame)
    say(f"Wrote {len(aligned)} aligned frames -> {FLAGS.align_only}")


def write_extras(result, sources, maps_dir, plot) -> None:
    """The maps (--save_maps) and the figure (--plot), if asked for."""
    if not maps_dir and not plot:
        return
    from mfkeras.evaluation import figures as visualize
    from mfkeras.io import images

    if maps_dir:
        for path in visualize.save_maps(result, maps_dir):
            say(f"  map: {path}")
    if plot:
        images.write_bytes_atomic(plot, visualize.figure_png(result, sources))
        say(f"  figure: {plot}")


def run():
    """Console-script entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
