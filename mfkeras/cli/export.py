"""Exports the fusion model for serving (console script `mfkeras-export`).

Writes, under --output_dir:
  <version>/          the SavedModel (signatures serving_default = fuse, fuse, score_map),
                      laid out for TensorFlow Serving (model base path = --output_dir)
  tflite/             with --tflite: score_map_<quantization>.tflite (dynamic H, W) and,
                      with --tflite_tile_size T, score_map_tile<T>_<quantization>.tflite
  export.json         what was exported and how (flags, files, versions)

With --verify_dir, the written SavedModel (loaded back from disk) and the TFLite
files are compared with the Python pipeline on every *_A.* / *_B.* pair there,
and the figures go to --verify_json.

Example:
  mfkeras-export --output_dir=exported/mfkeras --model=liu2017_single_fc
  mfkeras-export --output_dir=/tmp/mfkeras --liu_mat=../shared/ref/liu2017/cnnmodel.mat
      --tflite=float32,float16,dynamic_int8 --tflite_tile_size=256 --verify_dir=../shared/data/lytro
  docker run -p 8501:8501 -v "$PWD/exported/mfkeras:/models/mfkeras" -e MODEL_NAME=mfkeras tensorflow/serving
"""

import os
from pathlib import Path

from absl import flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mfkeras.cli import common as cli  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

QUANTIZATIONS = cli.QUANTIZATIONS

flags.DEFINE_string("output_dir", None, "Directory to export into (the TensorFlow Serving model base path).")
flags.DEFINE_integer("version", 1, "SavedModel version folder under --output_dir.")
cli.define_fusion_flags(flags)
flags.DEFINE_list("tflite", [], f"TFLite quantizations to write, any of {', '.join(QUANTIZATIONS)}.")
flags.DEFINE_integer(
    "tflite_tile_size", 0, "Also write fixed-tile TFLite models of this side, for GPU delegates (0: none)."
)
flags.DEFINE_string("verify_dir", None, "Compare the export with the Python pipeline on the pairs here.")
flags.DEFINE_string(
    "verify_json", str(REPO_ROOT / "experiments/results/export_parity.json"), "Where --verify_dir writes."
)
flags.DEFINE_string(
    "litert_dir", None, "Also (or only, without --output_dir) write the LiteRT backend's files here "
    "(pair, project and tail .tflite models and litert.json), e.g. saved_models/<name>/litert.",
)
flags.DEFINE_enum(
    "litert_quantization", "float32", list(QUANTIZATIONS),
    "Quantization of the --litert_dir models (shipped: float32 in litert/, dynamic_int8 in litert_dynamic_int8/).",
)
flags.DEFINE_bool("overwrite", False, "Replace an existing SavedModel version folder.")

FLAGS = flags.FLAGS
# Recorded in export.json.
KNOWN_FLAGS = (
    "output_dir", "version", "model", "liu_mat", "refine", "consistency", "area_ratio", "symmetric",
    "dense", "inference_dtype", "jit_compile", "tflite", "tflite_tile_size", "verify_dir", "litert_dir",
    "litert_quantization", "overwrite",
)


def check_arguments():
    """Validates the flags before TensorFlow is imported; returns the model path and pairs."""
    from mfkeras.evaluation import pairs as source_pairs
    from mfkeras.network import zoo

    if FLAGS.litert_dir and not FLAGS.output_dir:
        if FLAGS.dense:
            raise ValueError("--litert_dir writes the strided network: leave out --dense.")
        return zoo.resolve_model_path(FLAGS.liu_mat or FLAGS.model), None, []
    if not FLAGS.output_dir:
        raise ValueError("--output_dir is required (or --litert_dir alone for the LiteRT backend's files).")
    if FLAGS.version < 1:
        raise ValueError(f"--version must be a positive integer. Received: {FLAGS.version}")
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
        raise ValueError(f"--output_dir exists and is not a directory: {FLAGS.output_dir}")
    version_dir = os.path.join(FLAGS.output_dir, str(FLAGS.version))
    if os.path.exists(version_dir) and not FLAGS.overwrite:
        raise ValueError(f"{version_dir} already exists; pass --overwrite or another --version.")
    unknown = [q for q in FLAGS.tflite if q not in QUANTIZATIONS]
    if unknown:
        raise ValueError(f"--tflite must list quantizations from {QUANTIZATIONS}. Received: {unknown}")
    if FLAGS.tflite_tile_size < 0:
        raise ValueError(f"--tflite_tile_size must be >= 0. Received: {FLAGS.tflite_tile_size}")
    pairs = []
    if FLAGS.verify_dir:
        if not os.path.isdir(FLAGS.verify_dir):
            raise ValueError(f"--verify_dir is not a directory: {FLAGS.verify_dir}")
        pairs = [(p.name, *p.paths) for p in source_pairs.find_pairs(FLAGS.verify_dir) if p.ok]
        if not pairs:
            raise ValueError(f"No usable <name>_A / <name>_B image pairs in {FLAGS.verify_dir}.")
    return zoo.resolve_model_path(FLAGS.liu_mat or FLAGS.model), version_dir, pairs


def write_tflite(network, directory: str) -> dict:
    """Writes the requested TFLite files; returns {file name: description}."""
    from mfkeras.deploy import tflite

    os.makedirs(directory, exist_ok=True)
    written = {}
    quantizations = FLAGS.tflite or (["float32"] if FLAGS.tflite_tile_size else [])
    for quantization in quantizations:
        tiles = [None] + ([FLAGS.tflite_tile_size] if FLAGS.tflite_tile_size else [])
        for tile_size in tiles:
            name = f"score_map_{quantization}.tflite" if tile_size is None else (
                f"score_map_tile{tile_size}_{quantization}.tflite"
            )
            if name in written:
                continue
            payload = tflite.convert(network, quantization, tile_size=tile_size)
            Path(directory, name).write_bytes(payload)
            written[name] = {"quantization": quantization, "tile_size": tile_size, "bytes": len(payload)}
            print(f"  tflite: {os.path.join(directory, name)} ({len(payload) / 1e6:.1f} MB)")
    return written


def print_pair(row: dict) -> None:
    """Prints one pair's SavedModel parity figures."""
    print(
        f"  {row['pair']}: decision agreement {100 * row['decision_agreement']:.3f} %, fused mean abs "
        f"diff {row['fused_mean_abs_diff']:.4f} (max {row['fused_max_abs_diff']}), "
        f"python {row['python_s']:.1f} s, served {row['served_s']:.1f} s"
    )


def print_summary(summary: dict) -> None:
    """Prints the parity summary of the SavedModel and each TFLite file."""
    print(
        f"Parity on {summary['pairs']} pairs: decision agreement >= "
        f"{100 * summary['min_decision_agreement']:.3f} %, fused mean abs diff <= "
        f"{summary['max_fused_mean_abs_diff']:.4f}"
    )
    for name, figures in summary["tflite"].items():
        print(
            f"  {name}: score max abs diff {figures['max_score_abs_diff']:.2e} (vs float64 "
            f"{figures['max_score_abs_diff_vs_float64']:.2e}), decision "
            f"agreement >= {100 * figures['min_initial_decision_agreement']:.3f} % (initial), "
            f"{100 * figures['min_decision_agreement']:.3f} % (after consistency), fused mean abs "
            f"diff <= {figures['max_fused_mean_abs_diff']:.4f}"
        )


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's saving chatter
    with cli.clean_errors("mfkeras-export"):
        # Everything is checked before TensorFlow is imported: errors come fast and alone.
        model_path, version_dir, pairs = check_arguments()

        import tensorflow as tf

        from mfkeras.deploy import saved_model as export
        from mfkeras import fusion
        from mfkeras.deploy import parity, tflite
        from mfkeras.network import zoo

        options = fusion.FusionOptions(**cli.fusion_option_kwargs(FLAGS))
        model = zoo.load_patch_model(model_path)
        network = fusion.as_score_network(model, dense=options.dense)
        if FLAGS.litert_dir:
            written = tflite.write_litert_bundle(
                fusion.as_score_network(model), FLAGS.litert_dir, model.name, FLAGS.litert_quantization
            )
            print(f"LiteRT backend files -> {FLAGS.litert_dir}: " + ", ".join(
                f"{name} ({size / 1e6:.1f} MB)" for name, size in sorted(written.items())
            ))
        if version_dir is None:
            return
        if os.path.exists(version_dir):
            tf.io.gfile.rmtree(version_dir)
        export.export_saved_model(version_dir, network, options)
        print(f"Exported {model.name} -> {version_dir} (signatures: {', '.join(export.SERVING_SIGNATURES)})")
        tflite_dir = os.path.join(FLAGS.output_dir, "tflite")
        tflite_files = write_tflite(network, tflite_dir) if (FLAGS.tflite or FLAGS.tflite_tile_size) else {}
        record = {
            "flags": {name: FLAGS[name].value for name in KNOWN_FLAGS},
            "model": model.name,
            "model_path": str(model_path),
            "saved_model": os.path.relpath(version_dir, FLAGS.output_dir),
            "signatures": list(export.SERVING_SIGNATURES),
            "options": {key: getattr(options, key) for key in options.__dataclass_fields__},
            "stride": network.stride,
            "patch_size": network.patch_size,
            "tflite": tflite_files,
            "tflite_interpreter": tflite.interpreter_package(),
            "tensorflow": tf.__version__,
        }
        cli.write_json(os.path.join(FLAGS.output_dir, "export.json"), record)
        if pairs:
            report = parity.compare_with_pipeline(
                version_dir, network, options, pairs, tflite_files, tflite_dir, on_pair=print_pair
            )
            report["export"] = record
            print_summary(report["summary"])
            cli.write_json(FLAGS.verify_json, report)
            print(f"  figures: {FLAGS.verify_json}")


def run():
    """Console-script entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
