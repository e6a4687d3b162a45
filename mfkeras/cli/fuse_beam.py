"""Fuses a batch of stacks as an Apache Beam pipeline (console script `mfkeras-fuse-beam`).

Needs the ``beam`` extra. Flags this script does not define go to Beam's PipelineOptions; a
name that neither knows is an error, as in every mfkeras script.

Example:
  mfkeras-fuse-beam --batch_dir stacks/ --output_dir fused/ \
      --direct_num_workers=2 --direct_running_mode=multi_processing
  mfkeras-fuse-beam --manifest gs://bucket/manifest.txt --output_dir gs://bucket/fused \
      --runner=DataflowRunner --project=my-project --region=europe-west1 \
      --temp_location=gs://bucket/tmp --setup_file=./setup.py
"""

import contextlib
import io
import logging
import os
import sys

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mfkeras.cli import common as cli  # noqa: E402

PROGRAM = "mfkeras-fuse-beam"

flags.DEFINE_string("batch_dir", None, "Batch folder: each subfolder with two or more images is one stack.")
flags.DEFINE_string(
    "manifest", None,
    "Text file with one stack a line (JSON list of paths, JSON {\"name\", \"paths\"} or comma-separated "
    "paths), on any Beam filesystem. A dead-letter file is a manifest of the stacks that failed.",
)
flags.DEFINE_string("output_dir", None, "Folder for <name>.<output_ext>, on any Beam filesystem.")
flags.DEFINE_string("output_ext", "png", "Output file type: png, jpg, tif, bmp.")
flags.DEFINE_string("dead_letter", None, "JSON-lines file of the stacks that failed (default <output_dir>/dead_letter.jsonl).")
flags.DEFINE_bool("overwrite", False, "Fuse stacks whose output exists instead of skipping them.")
cli.define_fusion_flags(flags)
flags.DEFINE_enum(
    "stack_method", "joint", list(cli.STACK_METHODS),
    "Three or more frames: joint O(N) scoring with one label map, or pairwise in sequence.",
)
flags.DEFINE_float("memory_budget_mb", 2048, "Score in tiles sized so the network fits this budget.")
flags.DEFINE_integer("max_tile_side", None, "Score in tiles of at most this many pixels a side.")

FLAGS = flags.FLAGS


def parse_flags_and_pipeline_args(argv):
    """Parses this script's flags; returns ``[program, *beam_args]`` with what is left.

    Bad values of this script's flags give one line and exit status 2, as in every
    mfkeras script; names it does not define are left for Beam's PipelineOptions.
    """
    try:
        return FLAGS(argv, known_only=True)
    except flags.Error as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        print("Pass --helpfull to see the flags; Beam's own options pass through.", file=sys.stderr)
        sys.exit(cli.USAGE_EXIT_STATUS)


def main(argv):
    pipeline_args = argv[1:]
    with cli.clean_errors(PROGRAM):
        # Flags are checked before Beam and TensorFlow are imported: errors come fast and alone.
        from mfkeras.batch.stacks import output_path
        from mfkeras.fusion.options import FusionOptions
        from mfkeras.io.images import ImageError

        if (FLAGS.batch_dir is None) == (FLAGS.manifest is None):
            raise ImageError("Pass exactly one of --batch_dir and --manifest.")
        if not FLAGS.output_dir:
            raise ImageError("--output_dir is required.")
        output_path(FLAGS.output_dir, "stack", FLAGS.output_ext)  # checks --output_ext
        options = FusionOptions(
            **cli.fusion_option_kwargs(FLAGS),
            stack_method=FLAGS.stack_method,
            max_tile_side=FLAGS.max_tile_side,
            memory_budget_mb=FLAGS.memory_budget_mb,
        )
        batch_beam = _import_beam()
        check_pipeline_args(pipeline_args)
        model_spec = batch_beam.check_model_spec(FLAGS.liu_mat or FLAGS.model)
        if FLAGS.batch_dir is not None:
            stacks = batch_beam.list_stacks(FLAGS.batch_dir)
        else:
            stacks = batch_beam.read_manifest(FLAGS.manifest)
        batch_beam.check_unique_names(stacks)
        print(f"Fusing {len(stacks)} stacks -> {FLAGS.output_dir}", flush=True)
        summary = batch_beam.fuse_batch_beam(
            stacks,
            FLAGS.output_dir,
            model_spec=model_spec,
            options=options,
            output_ext=FLAGS.output_ext,
            overwrite=FLAGS.overwrite,
            dead_letter=FLAGS.dead_letter,
            pipeline_options=pipeline_args,
        )
    if summary["fused"] is None:
        print(f"Done ({summary['stacks']} stacks); failures in {summary['dead_letter']}")
    else:
        print(
            f"Fused {summary['fused']}, skipped {summary['skipped']} (output exists), "
            f"failed {summary['failed']} of {summary['stacks']} stacks; failures in {summary['dead_letter']}"
        )


def _import_beam():
    """mfkeras.batch.beam, without the notes Beam logs on import about Google Cloud clients."""
    from mfkeras.io.images import ImageError

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        from mfkeras.batch import beam as batch_beam
    except ImportError as error:
        raise ImageError(f"{PROGRAM} needs Apache Beam: pip install \"mfkeras[beam]\" ({error}).") from None
    finally:
        root.setLevel(level)
    return batch_beam


def check_pipeline_args(args) -> None:
    """Rejects what Beam would drop with a warning (unknown names) or answer with its whole usage.

    Args:
        args: the arguments this script did not parse, meant for Beam's PipelineOptions.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    from mfkeras.io.images import ImageError

    # Beam keeps unknown "--name value" options when asked, but not "--name=value" ones.
    split = []
    for arg in args:
        split.extend(arg.split("=", 1) if arg.startswith("--") else [arg])
    beam_log = logging.getLogger("apache_beam.options.pipeline_options")
    level, captured = beam_log.level, io.StringIO()
    beam_log.setLevel(logging.ERROR)  # its "Discarding unparseable args" warning: we say it below
    try:
        with contextlib.redirect_stderr(captured):
            known = PipelineOptions(split).get_all_options()
            every = PipelineOptions(split).get_all_options(retain_unknown_options=True)
    except SystemExit:  # argparse rejected a value and printed the usage of every Beam option
        last = captured.getvalue().strip().splitlines()[-1:] or ["invalid value"]
        raise ImageError(f"Bad Beam pipeline option: {last[0].split('error: ', 1)[-1]}") from None
    finally:
        beam_log.setLevel(level)
    unknown = sorted(set(every) - set(known))
    if unknown:
        raise ImageError(
            f"Unknown flags: {', '.join('--' + name for name in unknown)} (neither {PROGRAM} flags "
            "nor Beam pipeline options)."
        )


def run():
    """Console-script entry point; exits 0 after the help it was asked for, as cli.run_main does."""
    from absl import app

    try:
        app.run(main, flags_parser=parse_flags_and_pipeline_args)
    except SystemExit as stop:
        if stop.code == 1 and any(arg in cli.HELP_FLAGS for arg in sys.argv[1:]):
            sys.exit(0)
        raise


if __name__ == "__main__":
    run()
