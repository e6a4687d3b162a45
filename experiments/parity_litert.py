"""Parity of the LiteRT backend with the Keras backend on a dataset of pairs (the 20 Lytro pairs).

Prints the worst figures and writes every pair's to JSON: largest score difference, decision
agreement, fused mean absolute difference (grey levels) and both run times.

Example:
  python experiments/parity_litert.py --pairs_dir=../shared/data/lytro
"""

import os
import sys
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402

flags.DEFINE_string("pairs_dir", str(REPO_ROOT.parent / "shared/data/lytro"), "Folder of <name>_A/_B pairs.")
flags.DEFINE_string("model", None, "Shipped model with a LiteRT bundle (default: the shipped default).")
flags.DEFINE_enum("quantization", "float32", ["float32", "dynamic_int8"], "Which shipped LiteRT bundle.")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/parity_litert.json"), "Where to write.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    with cli.clean_errors("parity_litert"):
        from mfkeras.deploy import parity
        from mfkeras.evaluation import pairs as source_pairs
        from mfkeras.network import zoo

        pairs = [(p.name, *p.paths) for p in source_pairs.find_pairs(FLAGS.pairs_dir) if p.ok]
        network = zoo.load_litert_network(FLAGS.model, quantization=FLAGS.quantization)
        report = parity.compare_backends(pairs, zoo.load_patch_model(FLAGS.model), network)
        report["quantization"] = FLAGS.quantization
        report["machine"] = provenance.describe_machine()
        summary = report["summary"]
        print(
            f"{summary['pairs']} pairs: score max abs diff {summary['max_score_abs_diff']:.2e}, decision "
            f"agreement >= {100 * summary['min_decision_agreement']:.3f} %, fused mean abs diff <= "
            f"{summary['max_fused_mean_abs_diff']:.4f}; median keras {summary['median_keras_s']:.2f} s, "
            f"litert {summary['median_litert_s']:.2f} s"
        )
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
